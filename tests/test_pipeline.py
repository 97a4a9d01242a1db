"""The pipeline table (modelgate/pipeline.py): the one place the stage order, prerequisites and skip reasons live."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modelgate import pipeline
from modelgate.evidence import StageEvidence, Status
from modelgate.request import IntakeRequest

REPO = Path(__file__).resolve().parents[1]


def _evidence(stage: str, status: Status, **extra: object) -> StageEvidence:
    return StageEvidence(stage=stage, status=status, **extra)  # type: ignore[arg-type]


def _request(**changes: object) -> IntakeRequest:
    return IntakeRequest(source="/m", name="m", version="1", eval_data="sklearn:digits").model_copy(update=changes)


def test_every_reader_uses_the_table() -> None:
    from flows.evaluate import ADVERSARIAL, BACKDOOR, FORENSICS, INVERSION, LEAKAGE, MEMBERSHIP, PRIVACY, STAGES
    from modelgate import progress
    from modelgate.ledger import layout

    assert progress.STAGES == pipeline.NAMES
    assert layout.EVIDENCE_FILES == pipeline.EVIDENCE_FILES and layout.EVALUATIONS == pipeline.EVALUATIONS
    assert STAGES == pipeline.EVALUATIONS == (BACKDOOR, ADVERSARIAL, MEMBERSHIP, PRIVACY, FORENSICS, INVERSION, LEAKAGE)


@pytest.mark.parametrize(
    ("stage", "recorded", "changes", "reason"),
    [
        ("manifest", {"fetch": Status.ERROR}, {}, pipeline.FETCH_INCOMPLETE),
        ("scan", {"fetch": Status.PASS}, {}, None),
        ("signature", {"fetch": Status.PASS, "manifest": Status.FAIL}, {}, pipeline.NO_MANIFEST),
        ("load", {"scan": Status.FAIL}, {}, pipeline.SCAN_NOT_PASSED),
        ("load", {"scan": Status.PASS}, {"eval_data": None}, pipeline.NO_EVAL_DATA),
        ("backdoor", {"scan": Status.PASS, "load": Status.FAIL}, {}, pipeline.NOT_LOADED),
        ("backdoor", {"scan": Status.PASS, "load": Status.PASS, "reference": Status.FAIL}, {}, None),
        (
            "privacy",
            {"scan": Status.PASS, "load": Status.PASS, "reference": Status.FAIL},
            {},
            "the reference was refused: pin",
        ),
        ("privacy", {"scan": Status.PASS, "load": Status.PASS, "reference": Status.SKIPPED}, {}, None),
        ("publish", {}, {"publish": False}, pipeline.NOT_PUBLISHED_BY_REQUEST),
        ("validation", {}, {}, None),
    ],
)
def test_skip_reasons(stage: str, recorded: dict[str, Status], changes: dict, reason: str | None) -> None:
    evidence = {
        name: _evidence(name, status, reason="pin" if name == "reference" else None)
        for name, status in recorded.items()
    }
    assert pipeline.skip_reason(stage, evidence, _request(**changes)) == reason


def test_a_pin_mismatch_still_lists_the_files_so_the_signature_runs() -> None:
    manifest = _evidence("manifest", Status.FAIL, details={"files": []})
    recorded = {"fetch": _evidence("fetch", Status.PASS), "manifest": manifest}
    assert pipeline.skip_reason("signature", recorded, _request()) is None


def test_no_skip_reason_is_written_outside_the_table() -> None:
    """The reasons are constants of modelgate/pipeline.py: no other module spells one out."""
    reasons = {
        value
        for name, value in vars(pipeline).items()
        if name.isupper() and isinstance(value, str) and name not in ("NAMES",)
    }
    sources = [*REPO.glob("flows/*.py"), *REPO.glob("modelgate/**/*.py"), *REPO.glob("tasks/**/*.py")]
    for path in sources:
        if path.name == "pipeline.py" and path.parent.name == "modelgate":
            continue
        literals = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
        assert not reasons & literals, (path, reasons & literals)


def test_dvc_yaml_writes_each_stage_evidence_in_the_stage_the_table_names() -> None:
    """dvc.yaml's stages come in the table's order, and each writes the evidence of the rows it groups."""
    import yaml

    from modelgate.ledger.layout import EVIDENCE_DIR

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert [name for name in declared if name != "examples"] == list(pipeline.DVC_STAGES)
    for row in pipeline.STAGES:
        if row.dvc_stage and row.dvc_file:
            outs = [o if isinstance(o, str) else next(iter(o)) for o in declared[row.dvc_stage].get("outs", [])]
            assert f"{EVIDENCE_DIR}/{row.dvc_file}" in outs, (row.name, row.dvc_stage)
