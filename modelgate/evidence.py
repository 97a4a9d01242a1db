"""Typed evidence: what every stage returns and what the policy gate reads.

A finding is evidence, never an exception: a stage that crashes returns an
``error`` status and the gate fails closed on it.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

MetricValue = str | int | float | bool | None | list[str | int | float | bool]


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


def utcnow() -> datetime:
    return datetime.now(UTC)


class StageEvidence(BaseModel):
    """The result of one stage: status, flat metrics for the gate, and details for people."""

    stage: str
    status: Status
    reason: str | None = Field(default=None, description="Why the status is not pass (required for skipped/error).")
    metrics: dict[str, MetricValue] = Field(
        default_factory=dict, description="Flat mapping, keys namespaced '<stage>.<name>', read by policies."
    )
    details: dict[str, Any] = Field(default_factory=dict, description="Structured output for reviewers.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Digests of the inputs this stage read.")
    tools: dict[str, str] = Field(default_factory=dict, description="Versions of the tools used.")
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    duration_s: float | None = None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


@contextmanager
def timed(evidence: StageEvidence) -> Iterator[StageEvidence]:
    """Stamp start, end and duration on evidence built inside the block."""
    start = time.perf_counter()
    evidence.started_at = utcnow()
    try:
        yield evidence
    finally:
        evidence.finished_at = utcnow()
        evidence.duration_s = round(time.perf_counter() - start, 6)


def run_stage(stage: str, body: Callable[[], StageEvidence]) -> StageEvidence:
    """Run a stage body; turn an unexpected crash into ``error`` evidence instead of raising."""
    start = time.perf_counter()
    started = utcnow()
    try:
        evidence = body()
    except Exception as exc:  # noqa: BLE001 - a crash is evidence, the gate fails closed on it
        evidence = StageEvidence(
            stage=stage,
            status=Status.ERROR,
            reason=f"{type(exc).__name__}: {exc}",
            details={"traceback": traceback.format_exc(limit=8)},
        )
    evidence.started_at = started
    evidence.finished_at = utcnow()
    evidence.duration_s = round(time.perf_counter() - start, 6)
    return evidence


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no whitespace) for digests and signatures."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_evidence(folder: Path, name: str, model: BaseModel) -> str:
    """Write ``<folder>/<name>.json`` and return its digest (``sha256:<hex>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = model.model_dump_json(indent=2).encode()
    (folder / f"{name}.json").write_bytes(data)
    return sha256_bytes(data)
