"""Fetch stage: bring the model from its source into the run's workspace, and say what came.

The stage never raises: a refused or failed fetch is ``error`` evidence carrying the one-line
``FetchError`` reason (the gate fails closed on it), and an unexpected crash is ``error`` evidence
with its traceback. The Prefect retries therefore only cover failures of the task run itself,
never a permanent refusal such as a size cap.
"""

from __future__ import annotations

import traceback
from importlib import metadata
from pathlib import Path

from prefect import task

from modelgate.errors import FetchError
from modelgate.evidence import StageEvidence, Status, timed
from modelgate.settings import Settings
from modelgate.sources import FetchResult, fetch, source_scheme

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


fetch_task = task(name="fetch", task_run_name="fetch", retries=2, retry_delay_seconds=2)(fetch_stage)

__all__ = ["fetch_stage", "fetch_task"]
