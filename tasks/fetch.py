"""Fetch stage: bring the model from its source into the run's workspace, and say what came.

The stage never raises: a refused or failed fetch is ``error`` evidence carrying the one-line
``FetchError`` reason (the gate fails closed on it), and an unexpected crash is ``error`` evidence
with its traceback. The task raises only for a transient error (timeout, refused connection, HTTP
429/5xx, truncated download) while attempts are left, so Prefect retries it; a permanent refusal
such as a size cap is never retried. The result is cached per run (``tasks.caching.RUN_SCOPED``):
a retried flow run does not fetch again, a new run always does; an error is never cached.
"""

from __future__ import annotations

import re
import traceback
from importlib import metadata
from pathlib import Path

from prefect import task
from prefect.runtime import task_run

from modelgate.errors import FetchError
from modelgate.evidence import StageEvidence, Status, timed
from modelgate.settings import Settings
from modelgate.sources import FetchResult, fetch, source_scheme
from tasks.caching import RUN_SCOPED, keep_out_of_cache, results_dir, retry_delays

STAGE = "fetch"


def fetch_stage(source: str, workspace: Path, settings: Settings) -> tuple[StageEvidence, FetchResult | None]:
    """Fetch ``source`` into the empty folder ``workspace``; return evidence and the result (None on error)."""
    evidence = StageEvidence(stage=STAGE, status=Status.ERROR)
    result: FetchResult | None = None
    with timed(evidence):
        scheme = _scheme_or_none(source)
        if scheme is not None:
            evidence.metrics[f"{STAGE}.scheme"] = scheme
        evidence.tools = _tool_versions(scheme)
        try:
            result = fetch(
                source,
                workspace,
                max_bytes=settings.max_fetch_bytes,
                max_files=settings.max_files,
                timeout_s=settings.http_timeout_s,
                s3_endpoint=settings.s3_endpoint,
            )
        except FetchError as exc:
            evidence.reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - a crash is evidence, the gate fails closed on it
            evidence.reason = f"{type(exc).__name__}: {exc}"
            evidence.details["traceback"] = traceback.format_exc(limit=8)
        else:
            _describe(evidence, result)
    return evidence, result


def _describe(evidence: StageEvidence, result: FetchResult) -> None:
    evidence.status = Status.PASS
    evidence.metrics.update(
        {
            f"{STAGE}.scheme": result.scheme,
            f"{STAGE}.source_host": result.source_host,
            f"{STAGE}.file_count": result.file_count,
            f"{STAGE}.total_bytes": result.total_bytes,
        }
    )
    evidence.details.update(
        {
            "resolved": result.resolved,
            "revision": result.revision,
            "revision_requested": result.revision_requested,
            "revision_pinned": result.revision_pinned,
            "files": result.files,
        }
    )


def _scheme_or_none(source: str) -> str | None:
    try:
        return source_scheme(source.strip())
    except FetchError:
        return None


def _tool_versions(scheme: str | None) -> dict[str, str]:
    """boto3 always (a core dependency), plus the client library this scheme uses."""
    names = ["boto3"]
    if scheme == "hf":
        names.append("huggingface_hub")
    elif scheme in ("https", "http"):
        names.append("httpx")
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


RETRIES = 2
# Symptoms of a source that may answer on the next attempt; anything else is a refusal or a bug.
_TRANSIENT = re.compile(
    r"HTTP (429|5\d\d)|timed? ?out|timeout|connect|unreachable|truncated|temporar|reset by peer|SlowDown", re.I
)


class FetchUnavailable(FetchError):
    """A transient fetch error, raised so that Prefect retries the task."""


def transient(evidence: StageEvidence) -> bool:
    """True for an ``error`` whose reason looks like a network hiccup rather than a refusal."""
    return evidence.status is Status.ERROR and bool(_TRANSIENT.search(evidence.reason or ""))


@task(
    name="fetch",
    task_run_name="fetch",
    retries=RETRIES,
    retry_delay_seconds=retry_delays(2, 10),
    cache_policy=RUN_SCOPED,
    persist_result=True,
    result_storage=results_dir(),
)
def fetch_task(source: str, workspace: Path, settings: Settings) -> tuple[StageEvidence, FetchResult | None]:
    evidence, result = fetch_stage(source, workspace, settings)
    if transient(evidence) and (task_run.run_count or 1) <= RETRIES:
        raise FetchUnavailable(evidence.reason or "fetch failed")
    keep_out_of_cache(evidence)
    return evidence, result


__all__ = ["FetchUnavailable", "fetch_stage", "fetch_task", "transient"]
