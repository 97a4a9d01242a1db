"""Fetch a model from its source into an empty per-run workspace folder, safely and within caps.

Sources: a local path or ``file://`` URI, ``s3://bucket/prefix``, ``https://`` (plain ``http://``
only to loopback hosts) and ``hf://org/repo[@revision]``. Each fetcher checks what the source
announces (listing, Content-Length, archive members, hub file list) against ``max_bytes`` and
``max_files`` before downloading, and again while bytes arrive. A failure raises ``FetchError``
with one line and leaves the destination empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from modelgate.errors import FetchError
from modelgate.sources.safety import Budget, check_web_url, clear_folder, inventory, prepare_destination

__all__ = ["FetchError", "FetchResult", "fetch", "source_scheme"]

_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass
class FetchResult:
    """What landed in ``root`` and where it came from (the fetch stage's evidence is built from it)."""

    root: Path
    scheme: str
    source_host: str
    resolved: str
    revision: str | None
    revision_requested: str | None
    file_count: int
    total_bytes: int
    files: list[str] = field(default_factory=list)

    @property
    def revision_pinned(self) -> bool:
        """True only for an hf source requested at a full 40-hex commit sha."""
        from modelgate.sources.hf import is_pinned

        return self.scheme == "hf" and is_pinned(self.revision_requested)


@dataclass(frozen=True)
class _Origin:
    """What a fetcher knows about the source beyond the files it wrote."""

    source_host: str
    resolved: str
    revision: str | None = None
    revision_requested: str | None = None


def source_scheme(source: str) -> str:
    """``local``, ``file``, ``s3``, ``https``, ``http`` or ``hf``; any other ``x://`` is refused."""
    match = _URI.match(source)
    if match is None:
        return "local"
    scheme = match.group(1).lower()
    if scheme not in ("file", "s3", "https", "http", "hf"):
        raise FetchError(
            f"source {source} has an unsupported scheme {scheme!r} (use a path, file://, s3://, https://, hf://)"
        )
    return scheme


def fetch(
    source: str,
    dest: Path,
    *,
    max_bytes: int,
    max_files: int,
    timeout_s: float,
    s3_endpoint: str | None = None,
) -> FetchResult:
    """Fetch ``source`` into the empty folder ``dest`` (created if missing) and describe what landed."""
    source = source.strip()
    if max_bytes <= 0 or max_files <= 0 or timeout_s <= 0:
        raise FetchError(f"invalid fetch limits: max_bytes={max_bytes}, max_files={max_files}, timeout_s={timeout_s}")
    scheme = source_scheme(source)
    _validate(scheme, source)
    root = prepare_destination(Path(dest))
    budget = Budget(source, max_bytes, max_files)
    try:
        origin = _run_fetcher(scheme, source, root, budget, timeout_s, s3_endpoint)
        files = inventory(root)
        final = Budget(source, max_bytes, max_files)
        for _, size in files:
            final.add_file(size)
        if not files:
            raise FetchError(f"source {source} holds no files")
    except BaseException:
        clear_folder(root)
        raise
    return FetchResult(
        root=root,
        scheme=scheme,
        source_host=origin.source_host,
        resolved=origin.resolved,
        revision=origin.revision,
        revision_requested=origin.revision_requested,
        file_count=len(files),
        total_bytes=sum(size for _, size in files),
        files=[name for name, _ in files],
    )


def _validate(scheme: str, source: str) -> None:
    """Check the source's syntax (and URL policy) before the destination is touched or a socket opened."""
    if scheme in ("https", "http"):
        check_web_url(source)
    elif scheme == "s3":
        from modelgate.sources.s3 import parse_s3_uri

        parse_s3_uri(source)
    elif scheme == "hf":
        from modelgate.sources.hf import parse_hf_uri

        parse_hf_uri(source)
    elif scheme == "file":
        from modelgate.sources.local import path_from_source

        path_from_source(source)


def _run_fetcher(
    scheme: str, source: str, root: Path, budget: Budget, timeout_s: float, s3_endpoint: str | None
) -> _Origin:
    fetchers: dict[str, Callable[[], _Origin]] = {
        "local": lambda: _fetch_local(source, root, budget),
        "file": lambda: _fetch_local(source, root, budget),
        "s3": lambda: _fetch_s3(source, root, budget, timeout_s, s3_endpoint),
        "https": lambda: _fetch_https(source, root, budget, timeout_s),
        "http": lambda: _fetch_https(source, root, budget, timeout_s),
        "hf": lambda: _fetch_hf(source, root, budget, timeout_s),
    }
    return fetchers[scheme]()


def _fetch_local(source: str, root: Path, budget: Budget) -> _Origin:
    from modelgate.sources.local import fetch_local

    path = fetch_local(source, root, budget)
    return _Origin(source_host="", resolved=path.as_uri())


def _fetch_s3(source: str, root: Path, budget: Budget, timeout_s: float, endpoint: str | None) -> _Origin:
    from modelgate.sources.s3 import fetch_s3, parse_s3_uri

    used = fetch_s3(source, root, budget, endpoint=endpoint, timeout_s=timeout_s)
    bucket, prefix = parse_s3_uri(source)
    return _Origin(source_host=urlsplit(used).hostname or "", resolved=f"s3://{bucket}/{prefix}")


def _fetch_https(source: str, root: Path, budget: Budget, timeout_s: float) -> _Origin:
    from modelgate.sources.https import fetch_https

    fetch_https(source, root, budget, timeout_s)
    parts = urlsplit(source)
    return _Origin(source_host=(parts.hostname or "").lower(), resolved=parts._replace(fragment="").geturl())


def _fetch_hf(source: str, root: Path, budget: Budget, timeout_s: float) -> _Origin:
    from modelgate.sources.hf import fetch_hf, parse_hf_uri

    spec = parse_hf_uri(source)
    fetched = fetch_hf(source, root, budget, timeout_s)
    return _Origin(
        source_host=(urlsplit(fetched.endpoint).hostname or "").lower(),
        resolved=f"hf://{spec.repo_id}@{fetched.commit}",
        revision=fetched.commit,
        revision_requested=spec.revision,
    )
