"""Scan stage: every model file, every format, by content and by allowlist.

Cached by content (``tasks.caching.SCAN_CONTENT``: root digest, file digests, signature files,
scanner code), never by path: the same bytes are not scanned twice, a changed model always is.
A cached result is rebased onto this run's model folder (``scan_model``); an error is never cached.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from modelgate.evidence import StageEvidence
from modelgate.manifest import Manifest
from modelgate.scan.findings import ScanReport
from modelgate.scan.stage import scan_stage
from tasks.caching import SCAN_CONTENT, keep_out_of_cache, results_dir


@task(name="scan", task_run_name="scan", cache_policy=SCAN_CONTENT, persist_result=True, result_storage=results_dir())
def scan_task(model_dir: Path, manifest: Manifest | None = None) -> tuple[StageEvidence, ScanReport]:
    evidence, report = scan_stage(model_dir, manifest)
    keep_out_of_cache(evidence)
    return evidence, report


def rebase(evidence: StageEvidence, report: ScanReport, model_dir: Path) -> tuple[StageEvidence, ScanReport]:
    """A report reused from another run's folder now names this run's folder, and says where it came from."""
    if report.root == str(model_dir):
        return evidence, report
    evidence = evidence.model_copy(deep=True)
    evidence.details["root"] = str(model_dir)
    evidence.details["reused_scan_of"] = report.root
    return evidence, report.model_copy(update={"root": str(model_dir)})


def scan_model(model_dir: Path, manifest: Manifest | None = None) -> tuple[StageEvidence, ScanReport]:
    """Scan (or reuse the scan of the same content) and rebase the report onto ``model_dir``."""
    evidence, report = scan_task(model_dir, manifest)
    return rebase(evidence, report, Path(model_dir))


__all__ = ["rebase", "scan_model", "scan_stage", "scan_task"]
