"""Manifest stage: per-file SHA-256, OMS-compatible root digest, pin check."""

from __future__ import annotations

from prefect import task

from modelgate.manifest import manifest_stage

manifest_task = task(name="manifest", task_run_name="manifest")(manifest_stage)

__all__ = ["manifest_stage", "manifest_task"]
