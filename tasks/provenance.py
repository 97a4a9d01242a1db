"""Provenance stage: source, pinned revision and model-card facts for the gate."""

from __future__ import annotations

from prefect import task

from modelgate.provenance import provenance_stage

provenance_task = task(name="provenance", task_run_name="provenance")(provenance_stage)

__all__ = ["provenance_stage", "provenance_task"]
