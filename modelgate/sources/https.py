"""``https://`` downloads (plain ``http://`` to loopback only): streamed, size-capped, archives unpacked.

The URL is vetted before any connection, every redirect target again (and https never drops to
http), the size cap is enforced on Content-Length and again while streaming, and the body is
taken as served (``Accept-Encoding: identity``, raw bytes) so the cap counts real bytes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

from modelgate.errors import FetchError
from modelgate.sources.archive import archive_kind, extract_archive
from modelgate.sources.safety import (
    STAGING_DIR,
    Budget,
    check_web_url,
    human_bytes,
    make_dirs,
    open_new_file,
    write_chunks,
)

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 5
DEFAULT_NAME = "download"
_DISPOSITION = re.compile(r"""filename\*?=(?:[\w-]+'[\w-]*')?"?([^";]+)"?""", re.IGNORECASE)


def fetch_https(source: str, dest: Path, budget: Budget, timeout_s: float) -> None:
    """Download ``source`` into ``dest`` (as ``dest/<basename>``, or unpacked if it is an archive)."""
    check_web_url(source)
    staging = make_dirs(dest, (STAGING_DIR,))
    try:
        target, content_type = _download(source, staging, budget, timeout_s)
        kind = archive_kind(target, target.name, content_type)
        if kind is None:
            target.rename(dest / target.name)
        else:
            extract_archive(kind, target, dest, Budget(source, budget.max_bytes, budget.max_files), source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(source: str, staging: Path, budget: Budget, timeout_s: float) -> tuple[Path, str | None]:
    """Stream the body into ``staging``; a partial file is deleted on any failure."""
    import httpx

    headers = {"Accept-Encoding": "identity", "User-Agent": "modelgate-fetch"}
    target: Path | None = None
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers, follow_redirects=False) as client:
            response = _open(client, source)
            try:
                declared = _check_response(response, source, budget)
                name = _file_name(source, response.headers.get("content-disposition"))
                target = staging / name
                budget.add_file()
                with open_new_file(staging, (name,)) as writer:
                    received = write_chunks(response.iter_raw(), writer, budget=budget, limit=declared, what="body")
                if declared is not None and received != declared:
                    raise FetchError(f"source {source} was truncated: {received} of {declared} bytes")
                return target, response.headers.get("content-type")
            finally:
                response.close()
    except BaseException as exc:
        if target is not None:
            target.unlink(missing_ok=True)
        if isinstance(exc, httpx.HTTPError):
            raise _http_error(exc, source, timeout_s) from exc
        raise


def _open(client: httpx.Client, source: str) -> httpx.Response:
    """GET ``source`` as a stream, following at most MAX_REDIRECTS vetted redirects."""
    url = source
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(client.build_request("GET", url), stream=True)
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            return response
        response.close()
        next_url = urljoin(url, location)
        if urlsplit(url).scheme == "https" and urlsplit(next_url).scheme != "https":
            raise FetchError(f"source {source} redirects from https to {next_url}: refusing the downgrade")
        check_web_url(next_url, what="redirect target")
        url = next_url
    raise FetchError(f"source {source} redirects more than {MAX_REDIRECTS} times")


def _check_response(response: httpx.Response, source: str, budget: Budget) -> int | None:
    """Refuse an error status or a Content-Length over the cap; return the declared length."""
    if response.status_code >= 400 or response.is_redirect:
        raise FetchError(f"source {source} answered HTTP {response.status_code} {response.reason_phrase}".rstrip())
    length = response.headers.get("content-length")
    if length is None:
        return None
    if not length.isdigit():
        raise FetchError(f"source {source} sent an invalid Content-Length {length!r}")
    declared = int(length)
    if declared > budget.max_bytes:
        raise FetchError(
            f"source {source} exceeds the size cap: {human_bytes(declared)} > {human_bytes(budget.max_bytes)} "
            "(MODELGATE_MAX_FETCH_BYTES, from Content-Length)"
        )
    return declared


def _file_name(source: str, disposition: str | None) -> str:
    """The URL's last path segment, else the Content-Disposition file name, else ``download``."""
    candidates = [unquote(urlsplit(source).path.rsplit("/", 1)[-1])]
    if disposition and (match := _DISPOSITION.search(disposition)):
        candidates.append(unquote(match.group(1)).strip())
    for name in candidates:
        if _safe_name(name):
            return name
    return DEFAULT_NAME


def _safe_name(name: str) -> bool:
    bad = ("/", "\\", "\x00")
    return bool(name) and name not in (".", "..", STAGING_DIR) and not any(ch in name for ch in bad)


def _http_error(exc: httpx.HTTPError, source: str, timeout_s: float) -> FetchError:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__
        return FetchError(f"timed out fetching {source} ({kind} after {timeout_s:g} s, MODELGATE_HTTP_TIMEOUT_S)")
    if isinstance(exc, httpx.ConnectError):
        return FetchError(f"cannot connect to fetch {source}: {exc}")
    return FetchError(f"cannot fetch {source}: {type(exc).__name__}: {exc}")
