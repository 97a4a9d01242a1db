"""Reference stage: the trusted checkpoint the privacy audit and weight forensics compare against.

A reference is only as good as its identity, so it must be pinned: it is fetched like the
candidate, its manifest root digest must equal ``reference_digest``, it is scanned, and its
weights reach the evaluations only through the safe loader (a load record in its folder). Any
step that does not pass makes the stage ``fail`` with that step's reason; without a reference the
stage is ``skipped`` and the comparisons say so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task

from modelgate.evidence import StageEvidence, Status, run_stage
from modelgate.manifest import manifest_stage
from modelgate.scan.stage import scan_stage
from modelgate.settings import Settings
from tasks.fetch import fetch_stage
from tasks.load import load_stage

STAGE = "reference"


def reference_stage(
    source: str | None, digest: str | None, settings: Settings, workspace: Path
) -> tuple[StageEvidence, Path | None]:
    """Fetch, pin-check, scan and safely load the reference into ``workspace/reference-model``."""
    if not source:
        return StageEvidence(stage=STAGE, status=Status.SKIPPED, reason="no reference checkpoint named"), None
    if not digest:
        reason = "the reference checkpoint is not pinned (reference_digest): an unpinned reference proves nothing"
        return StageEvidence(stage=STAGE, status=Status.FAIL, reason=reason), None
    loaded: list[Path] = []

    def body() -> StageEvidence:
        evidence = StageEvidence(stage=STAGE, status=Status.FAIL, metrics={"reference.digest_verified": False})
        steps: dict[str, str] = {}
        evidence.details = {"source": source, "expected_digest": digest, "steps": steps}
        fetched_evidence, fetched = fetch_stage(source, Path(workspace) / "reference", settings)
        steps["fetch"] = fetched_evidence.status.value
        if fetched is None:
            evidence.reason = f"reference fetch: {fetched_evidence.reason}"
            return evidence
        manifest_evidence, manifest = manifest_stage(fetched.root, digest)
        steps["manifest"] = manifest_evidence.status.value
        if manifest is None or manifest_evidence.status is not Status.PASS:
            evidence.reason = f"reference manifest: {manifest_evidence.reason}"
            return evidence
        evidence.metrics["reference.digest_verified"] = True
        evidence.metrics["reference.root_digest"] = manifest.root_digest
        evidence.inputs = {"reference": manifest.root_digest}
        scan_evidence, report = scan_stage(fetched.root, manifest)
        steps["scan"] = scan_evidence.status.value
        if scan_evidence.status is not Status.PASS:
            evidence.reason = f"reference scan: {scan_evidence.reason or scan_evidence.status.value}"
            return evidence
        out = Path(workspace) / "reference-model"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        load_evidence = load_stage(fetched.root, report, out)
        steps["load"] = load_evidence.status.value
        if load_evidence.status is not Status.PASS:
            evidence.reason = f"reference load: {load_evidence.reason}"
            return evidence
        evidence.status = Status.PASS
        evidence.details["model_dir"] = str(out)
        loaded.append(out)
        return evidence

    evidence = run_stage(STAGE, body)
    return evidence, (loaded[0] if loaded and evidence.status is Status.PASS else None)


reference_task = task(name="reference", task_run_name="reference")(reference_stage)
