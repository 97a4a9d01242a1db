"""Scan stage: every model file, every format, by content and by allowlist."""

from __future__ import annotations

from prefect import task

from modelgate.scan.stage import scan_stage

scan_task = task(name="scan", task_run_name="scan")(scan_stage)

__all__ = ["scan_stage", "scan_task"]
