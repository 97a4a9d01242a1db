"""Issue 3's promise, end to end: the intake flow rejects every malicious corpus sample with a
finding that names the global (or structure) and where it sits, and passes every benign one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelgate.request import IntakeRequest
from tests.helpers.scan_corpus import Sample, build_corpus

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _as_model_folder(sample: Sample) -> Path:
    """Each sample sits in a folder of its own (with its siblings, e.g. ONNX external data): the model."""
    return sample.path if sample.path.is_dir() else sample.path.parent


def test_every_sample_through_the_intake_flow(prefect_server: str, corpus: list[Sample]) -> None:
    from flows.intake import intake

    wrong: list[str] = []
    for index, sample in enumerate(corpus):
        if "symlink" in sample.technique:
            continue  # a symlinked model is refused by fetch before any scan (covered in test_fetch)
        folder = _as_model_folder(sample)
        outcome = intake(IntakeRequest(source=str(folder), name="corpus", version=f"{index}.0.0"))
        scan = json.loads((Path(outcome.evidence_dir) / "scan.json").read_text())
        verdict = scan["metrics"].get("scan.verdict")
        if sample.expected == "unsafe":
            if outcome.decision != "rejected" or verdict != "unsafe":
                wrong.append(f"{sample.technique}: decision={outcome.decision} scan={verdict}")
                continue
            if not any("scan-passed" in r for r in outcome.reasons):
                wrong.append(f"{sample.technique}: rejected but not by scan-passed: {outcome.reasons}")
            findings = scan["details"]["findings"]
            if sample.global_name and not any(f.get("global_name") == sample.global_name for f in findings):
                wrong.append(f"{sample.technique}: no finding names {sample.global_name}")
            if sample.member and not any(sample.member in (f.get("member") or "") for f in findings):
                wrong.append(f"{sample.technique}: no finding points at member {sample.member}")
            sarif = json.loads((Path(outcome.evidence_dir) / "scan.sarif").read_text())
            if not sarif["runs"][0]["results"]:
                wrong.append(f"{sample.technique}: SARIF has no result")
        elif verdict != "safe" or outcome.stages["scan"] != "pass":
            wrong.append(f"benign {sample.technique}: scan={verdict}, {scan.get('reason')}")
    assert not wrong, "\n".join(wrong)
