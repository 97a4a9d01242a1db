"""``hf://org/repo@revision`` sources, through huggingface_hub (imported only when used).

The revision is resolved once to a commit sha with ``model_info``; the file list and sizes from
that call are checked against the caps, then exactly those files are downloaded at that sha, so
what was checked is what was fetched even if the branch moves meanwhile. ``HF_ENDPOINT`` is read at
call time and passed explicitly; the download never reads or writes the user's hub cache, and the
``.cache/huggingface`` metadata huggingface_hub keeps in ``local_dir`` is removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.errors import FetchError
from modelgate.sources.safety import Budget, check_relpath, check_web_url

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_BRANCH = "main"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
_HF_META = ".cache"  # huggingface_hub keeps download metadata in local_dir/.cache/huggingface


@dataclass(frozen=True)
class HfSpec:
    repo_id: str
    revision: str | None


@dataclass(frozen=True)
class HfFetched:
    endpoint: str
    commit: str


def parse_hf_uri(source: str) -> HfSpec:
    """``hf://org/repo[@revision]`` -> repo id and requested revision (None: the default branch)."""
    rest = source[len("hf://") :] if source.lower().startswith("hf://") else ""
    repo_id, sep, revision = rest.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise FetchError(f"source {source} is not hf://org/repo[@revision]: invalid repo id {repo_id!r}")
    if sep and (not revision or any(ch.isspace() or ord(ch) < 32 for ch in revision)):
        raise FetchError(f"source {source} has an empty or invalid revision after '@'")
    return HfSpec(repo_id, revision if sep else None)


def is_pinned(revision: str | None) -> bool:
    """Only a full 40-hex commit sha pins a hub revision (branches and tags move)."""
    return revision is not None and COMMIT_SHA.match(revision) is not None


def hub_endpoint() -> str:
    """HF_ENDPOINT as set now (not when huggingface_hub was imported), vetted like any URL."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    check_web_url(endpoint, what="HF_ENDPOINT")
    return endpoint


def fetch_hf(source: str, dest: Path, budget: Budget, timeout_s: float) -> HfFetched:
    """Resolve the revision, check the file list against the caps, then download those files at that sha."""
    spec = parse_hf_uri(source)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise FetchError(f"cannot fetch {source}: HF_HUB_OFFLINE is set and a fresh workspace has no local copy")
    endpoint = hub_endpoint()
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    import httpx2
    from huggingface_hub import errors as hub_errors

    try:
        commit, files = _resolve(endpoint, spec, source, budget, timeout_s)
        _download(endpoint, spec.repo_id, commit, files, dest, source, budget, timeout_s)
    except hub_errors.RevisionNotFoundError as exc:
        raise FetchError(
            f"source {source}: revision {spec.revision or DEFAULT_BRANCH!r} not found at {endpoint}"
        ) from exc
    except hub_errors.RepositoryNotFoundError as exc:
        raise FetchError(
            f"source {source}: repo {spec.repo_id!r} not found at {endpoint} (or it is private or gated)"
        ) from exc
    except (OSError, httpx2.HTTPError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FetchError(f"cannot fetch {source} from {endpoint}: {type(exc).__name__}: {first_line}") from exc
    finally:
        shutil.rmtree(dest / _HF_META, ignore_errors=True)
    return HfFetched(endpoint=endpoint, commit=commit)


def _resolve(
    endpoint: str, spec: HfSpec, source: str, budget: Budget, timeout_s: float
) -> tuple[str, list[tuple[str, int]]]:
    """One ``model_info`` call: the commit sha and every file with its size, checked against the caps."""
    from huggingface_hub import HfApi

    info: Any = HfApi(endpoint=endpoint).model_info(
        spec.repo_id, revision=spec.revision or DEFAULT_BRANCH, files_metadata=True, timeout=timeout_s
    )
    commit = str(info.sha or "")
    if not COMMIT_SHA.match(commit):
        raise FetchError(f"source {source}: the hub returned no commit sha for the revision")
    if is_pinned(spec.revision) and commit != spec.revision:
        raise FetchError(f"source {source}: the hub resolved the pinned revision to another commit {commit}")
    if info.siblings is None:
        raise FetchError(f"source {source}: the hub returned no file list")
    files: list[tuple[str, int]] = []
    for sibling in info.siblings:
        name, size = sibling.rfilename, sibling.size
        parts = check_relpath(name, what="hub file", source=source)
        if parts[0] == _HF_META:
            raise FetchError(f"refusing hub file {name!r} in {source}: '.cache/' is reserved by huggingface_hub")
        if size is None:
            raise FetchError(f"source {source}: the hub gave no size for {name!r}, so the size cap cannot be checked")
        files.append((name, int(size)))
    budget.add_files(size for _, size in files)
    return commit, files


def _download(
    endpoint: str,
    repo_id: str,
    commit: str,
    files: list[tuple[str, int]],
    dest: Path,
    source: str,
    budget: Budget,
    timeout_s: float,
) -> None:
    """Download the checked files at ``commit``; every file must have the size the hub announced."""
    from huggingface_hub import hf_hub_download

    # An empty, private cache: never reuse (or trust) whatever sits in the user's hub cache.
    private_cache = dest / _HF_META / "huggingface" / "modelgate-empty-cache"
    written = Budget(source, budget.max_bytes, budget.max_files)
    for name, size in files:
        hf_hub_download(
            repo_id,
            name,
            revision=commit,
            local_dir=dest,
            cache_dir=private_cache,
            endpoint=endpoint,
            etag_timeout=timeout_s,
        )
        path = dest.joinpath(*name.split("/"))
        if path.is_symlink() or not path.is_file():
            raise FetchError(f"hub file {name!r} in {source} did not land as a regular file")
        actual = path.stat().st_size
        written.add_file(actual)
        if actual != size:
            raise FetchError(f"hub file {name!r} in {source} has {actual} bytes, the hub announced {size}")
