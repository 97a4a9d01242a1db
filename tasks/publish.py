"""Publish stage: the approved model, its evidence and a signed attestation to the registry.

The intake flow calls it only on approve. ``publish_stage`` never raises; the task raises for a
retryable error (S3 unreachable, 5xx, index not updated) while attempts are left, so Prefect
retries it, and returns the ``error`` evidence on the last attempt so the flow records it.
A retry is safe: publish takes over the claim of its own dead attempt (or any claim whose lease
ran out), and a committed version is a no-op.
Retry delays come from ``MODELGATE_RETRY_DELAY_S`` when set (tests); not cached: a resumed run's
publish finds its own committed version and does nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import task_run

from modelgate.evidence import StageEvidence, Status
from modelgate.registry.errors import RegistryUnavailable
from modelgate.registry.stage import publish_stage
from tasks.caching import retry_delays

RETRIES = 2


@task(name="publish", task_run_name="publish", retries=RETRIES, retry_delay_seconds=retry_delays(2, 10))
def publish_task(*args: Any, **kwargs: Any) -> StageEvidence:
    evidence = publish_stage(*args, **kwargs)
    retryable = evidence.status is Status.ERROR and evidence.details.get("retryable")
    if retryable and (task_run.run_count or 1) <= RETRIES:
        raise RegistryUnavailable(evidence.reason or "publish failed")
    return evidence


__all__ = ["publish_stage", "publish_task"]
