"""Retries and caching of the intake's tasks: a failed run resumes without redoing finished stages.

Two kinds of cache key, both explicit JSON (stable across processes, unlike pickles):

* ``RunScoped``: the task's inputs and source. The intake's inputs name the run's own workspace
  (``<workspace>/<run-id>/...``), so the key matches only when the *same* flow run is retried from
  the Prefect UI; a new run always fetches and loads again.
* ``ScanContent``: the model's content (manifest root digest, every file digest, the signature files
  the manifest leaves out) plus the scanner's code. A path never keys a scan, so a changed model is
  always scanned again, and a scanner change invalidates every cached scan.

Results persist under ``$MODELGATE_HOME/results``. An ``error`` evidence is never cached
(``keep_out_of_cache``): a resumed run tries that stage again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import get_transaction
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from modelgate.evidence import StageEvidence, Status
from modelgate.settings import load_settings, non_negative_number

RETRY_DELAY_ENV = "MODELGATE_RETRY_DELAY_S"
SCANNER_PACKAGE = Path(__file__).resolve().parents[1] / "modelgate" / "scan"


def retry_delays(*defaults: float) -> list[float]:
    """A task's retry delays; ``MODELGATE_RETRY_DELAY_S`` replaces each one (tests set 0)."""
    override = non_negative_number(RETRY_DELAY_ENV)
    return [override] * len(defaults) if override is not None else list(defaults)


def results_dir() -> Path:
    """Where task and flow results persist (the cache's values): ``$MODELGATE_HOME/results``."""
    return load_settings().home / "results"


def plain(value: Any) -> Any:
    """Inputs as plain JSON data: pydantic models dumped, paths as strings, dataclasses as dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _task_source(task_ctx: TaskRunContext) -> str:
    return getattr(task_ctx.task, "source_code", None) or task_ctx.task.fn.__qualname__


@dataclasses.dataclass
class RunScoped(CachePolicy):
    """Inputs + task source, as JSON: a retried flow run (same run id, same workspace) reuses the result."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        if not task_ctx or not inputs:
            return None
        return hash_objects("run-scoped", _task_source(task_ctx), plain(inputs), raise_on_failure=True)


@lru_cache(maxsize=1)
def scanner_code_digest() -> str:
    """SHA-256 over the scanner's source files: a scanner change invalidates every cached scan."""
    digest = hashlib.sha256()
    for path in sorted(SCANNER_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(SCANNER_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _outside_manifest(model_dir: Path) -> dict[str, str]:
    """Digests of the top-level signature files, which the manifest leaves out but the scan reads."""
    from modelgate.manifest import SIGNATURE_FILES

    found = {}
    for name in SIGNATURE_FILES:
        path = model_dir / name
        if path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@dataclasses.dataclass
class ScanContent(CachePolicy):
    """Keys a scan on what the model *is*: root digest, file digests, signature files, scanner code."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        manifest, model_dir = inputs.get("manifest"), inputs.get("model_dir")
        if not task_ctx or manifest is None or model_dir is None:
            return None  # no manifest, no content key: scan every time
        files = sorted((f.path, f.sha256, f.size) for f in manifest.files)
        return hash_objects(
            "scan-content",
            _task_source(task_ctx),
            scanner_code_digest(),
            manifest.root_digest,
            files,
            _outside_manifest(Path(model_dir)),
            raise_on_failure=True,
        )


RUN_SCOPED = RunScoped()
SCAN_CONTENT = ScanContent()


def keep_out_of_cache(evidence: StageEvidence) -> None:
    """Called inside a task: an ``error`` result is not written to the cache, so a resume retries it."""
    transaction = get_transaction()
    if evidence.status is Status.ERROR and transaction is not None:
        transaction.write_on_commit = False


def was_cached(state: Any) -> bool:
    """True when a task run's state came from the cache rather than from running the task."""
    return getattr(state, "name", None) == "Cached"


__all__ = [
    "RUN_SCOPED",
    "SCAN_CONTENT",
    "keep_out_of_cache",
    "plain",
    "results_dir",
    "retry_delays",
    "scanner_code_digest",
    "was_cached",
]
