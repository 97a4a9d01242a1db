"""Signature stage: OMS bundles and detached Ed25519 signatures against the trust store."""

from __future__ import annotations

from prefect import task

from modelgate.signing.stage import signature_stage

signature_task = task(name="signature", task_run_name="signature")(signature_stage)

__all__ = ["signature_stage", "signature_task"]
