"""Read one run's evidence folder: every stage's evidence by stage name, and its artifact tables.

The intake flow and the DVC stages name files ``<stage>.json`` (evaluations also ``eval-<stage>.json``);
files are matched by the ``stage`` field they carry, so either naming is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from modelgate.evidence import StageEvidence, Status


@dataclass(frozen=True)
class RunEvidence:
    """The stage evidence found in one run's folder, keyed by stage name."""

    folder: Path
    stages: dict[str, StageEvidence]
    files: dict[str, str]  # stage -> file name it was read from

    def get(self, stage: str) -> StageEvidence | None:
        return self.stages.get(stage)

    def ran(self, stage: str) -> bool:
        """The stage produced results (pass or fail); skipped, error and absent did not."""
        evidence = self.stages.get(stage)
        return evidence is not None and evidence.status in (Status.PASS, Status.FAIL)

    def why_not(self, stage: str, what: str) -> str:
        """Why ``stage`` has no results: its status and reason, or that it is absent."""
        evidence = self.stages.get(stage)
        if evidence is None:
            return f"no {stage} evidence in this run ({what} not run)"
        return f"{stage} {evidence.status.value}: {evidence.reason or 'no reason recorded'}"


def _preference(path: Path, stage: str) -> int:
    """Canonical names first, so a copy under another name never shadows the original."""
    return {f"{stage}.json": 0, f"eval-{stage}.json": 1}.get(path.name, 2)


def load_run(folder: Path) -> RunEvidence:
    """Every top-level JSON file of ``folder`` that is stage evidence (request/decision are not)."""
    found: dict[str, tuple[int, StageEvidence, str]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            evidence = StageEvidence.model_validate(data)
        except (OSError, ValueError, ValidationError):
            continue
        rank = _preference(path, evidence.stage)
        if evidence.stage not in found or rank < found[evidence.stage][0]:
            found[evidence.stage] = (rank, evidence, path.name)
    return RunEvidence(
        folder=Path(folder),
        stages={stage: item[1] for stage, item in found.items()},
        files={stage: item[2] for stage, item in found.items()},
    )
