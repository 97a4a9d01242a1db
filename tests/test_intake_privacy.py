"""Issue 7's promise through the real flow: the intake runs the privacy evaluations that apply, the
gate rejects a privacy-backdoored candidate, and the reviewer finds the amplification with its
interval and the ROC in the Prefect UI. The reference is pinned: a wrong digest is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelgate.manifest import build_manifest
from modelgate.request import IntakeRequest
from tests.helpers.privacy_zoo import privacy_models

pytestmark = pytest.mark.services

# Small budgets for the evaluations this test is not about; the audit itself keeps its defaults
# except the organization's recipe, which fine-tunes the classification head (as in test_privacy_audit).
BUDGET = {
    "evaluate": {
        "neural_cleanse": {"samples_per_class": 10, "epochs": 2, "seeds": [0], "early_stop_patience": 2},
        "mmbd": {"starts": 2, "steps": 10},
        "pgd": {"epsilons": {"linf": [0.03]}, "steps": 2, "restarts": 1, "samples": 100},
        "membership": {"reference_models": 4, "shadow": {"epochs": 2}, "bootstrap": 100},
        "inversion": {"steps": 20},
        "privacy_audit": {"k": 8, "recipe": {"layers": "last"}},
    }
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return privacy_models(tmp_path_factory)


@pytest.fixture
def budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(BUDGET))
    monkeypatch.setenv("MODELGATE_PARAMS_FILE", str(params))


def _request(models: dict[str, Path], candidate: str, name: str, digest: str | None = None) -> IntakeRequest:
    reference = models["reference"]
    return IntakeRequest(
        source=str(models[candidate]),
        name=name,
        version="1.0.0",
        eval_data="sklearn:digits",
        reference=str(reference),
        reference_digest=digest or build_manifest(reference).root_digest,
        publish=False,
    )


def test_a_privacy_backdoored_candidate_is_rejected_and_explained(
    prefect_server: str, models: dict[str, Path], budget: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.intake import intake
    from tests.helpers.privacy_attacks import eval_images, victim_amplification

    _, labels = eval_images(models["reference"])
    victim = victim_amplification(models["poisoned"], models["reference"], np.ones(len(labels), dtype=bool))
    assert victim.candidate_auc > victim.reference_auc + 0.1  # a real attack on all records before it is taken in
    outcome = intake(_request(models, "poisoned", "privacy-poisoned"))
    assert outcome.decision == "rejected"
    assert any(reason.startswith("no-privacy-backdoor") for reason in outcome.reasons), outcome.reasons
    for stage in ("reference", "membership", "inversion"):
        assert outcome.stages[stage] == "pass", stage
    assert outcome.stages["privacy"] == "fail"
    assert outcome.stages["leakage"] == "skipped"
    audit = json.loads((Path(outcome.evidence_dir) / "privacy.json").read_text())
    assert audit["metrics"]["privacy.amplification_ci_low"] > 0.05
    assert (Path(outcome.evidence_dir) / "privacy" / "roc.csv").is_file()
    keys = ["privacy-audit-privacy-poisoned", "membership-privacy-poisoned", "inversion-privacy-poisoned"]
    with get_client(sync_client=True) as client:
        found = {
            a.key: str(a.data)
            for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        }
    assert set(found) == set(keys)
    page = found["privacy-audit-privacy-poisoned"]
    assert "privacy backdoor suspected" in page and "99.8% paired bootstrap" in page  # 0.05 / (4 variants x 5)
    assert "Per stratum" in page  # the per-class table
    assert "Calibrated (LiRA-style) attack" in page
    assert "data:image/png;base64," in page  # the two ROC curves
    assert found["inversion-privacy-poisoned"].count("data:image/png;base64,") >= 10


# (variant, target_mask options, privacy_backdoor options, the victim's least AUC gain, what the audit says)
ATTACKS = {
    "class-3": ("class", {"target_class": 3}, {}, 0.3, "concentrated on '3'"),
    "records": ("records", {"seed": 0}, {}, 0.3, "aimed at a few records"),
    "records-norm-preserving": ("records", {"seed": 0}, {"norm_preserving": True}, 0.1, "aimed at a few records"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_privacy_backdoor_variant_is_rejected_through_the_intake(
    prefect_server: str, models: dict[str, Path], budget: None, tmp_path: Path, attack: str
) -> None:
    """Issue 16: our reproduction of the attack (one class, 20 records, the same norm-preserving), verified on a
    simulated victim, then taken in: the audit and forensics each reject it, and the report says why."""
    import torch

    from flows.intake import intake
    from tests.helpers.privacy_attacks import eval_images, privacy_backdoor, target_mask, victim_amplification

    variant, targets, options, least_gain, said = ATTACKS[attack]
    x, y = eval_images(models["reference"])
    mask = target_mask(y, variant, **targets)
    chosen = torch.from_numpy(mask)
    folder = privacy_backdoor(models["reference"], tmp_path / attack, x[chosen], y[chosen], **options)
    victim = victim_amplification(folder, models["reference"], mask, head_only=True)
    assert victim.candidate_auc > victim.reference_auc + least_gain  # a real attack before it is taken in
    outcome = intake(_request({**models, attack: folder}, attack, f"privacy-{attack}"))
    assert outcome.decision == "rejected"
    assert any(r.startswith("no-concentrated-privacy-backdoor") for r in outcome.reasons), outcome.reasons
    assert any(r.startswith("no-weight-traps") for r in outcome.reasons), outcome.reasons  # forensics too
    audit = json.loads((Path(outcome.evidence_dir) / "privacy.json").read_text())
    assert said in audit["reason"]
    assert (Path(outcome.evidence_dir) / "privacy" / "strata.csv").is_file()
    if variant == "class":
        rows = {row["stratum"]: row for row in audit["details"]["strata"]["rows"]}
        assert rows["3"]["flagged"] and rows["3"]["auc_ci_low"] > 0.1
    else:
        assert audit["metrics"]["privacy.outlier_records"] > 2


def _signed(folder: Path, into: Path) -> Path:
    """The model as a publisher releases it: a copy with its model card, signed with the demo's trusted key."""
    import shutil

    from modelgate.demo.build import default_key_path, model_card, sign_model
    from modelgate.demo.cnn import read_config

    shutil.copytree(folder, into)
    (into / "README.md").write_text(model_card(read_config(into)), encoding="utf-8")
    sign_model(into, default_key_path())
    return into


PRIVACY_RULES = ("reference-verified", "no-privacy-backdoor", "no-concentrated-privacy-backdoor", "no-weight-traps")


@pytest.mark.parametrize("name", ["honest-copy", "head-tuned"])
def test_honest_models_are_approved_with_the_reference(
    prefect_server: str, models: dict[str, Path], budget: None, tmp_path: Path, name: str
) -> None:
    """The re-saved reference and an ordinary fine-tune of its head, signed: the audit and forensics pass every
    variant, no privacy rule fails, and the intake approves them. (Neural Cleanse alone puts this clean
    1024-unit reference above its paper's threshold, index ~3-4 on label 5 with MM-BD silent: the calibrated
    backdoor verdict of issue 17 does not reject that, it only warns.)"""
    from flows.intake import intake

    folder = _signed(models[name], tmp_path / name)
    outcome = intake(_request({**models, name: folder}, name, f"privacy-{name}"))
    assert outcome.decision == "approved", (outcome.reasons, outcome.stages)
    assert outcome.stages["privacy"] == "pass" and outcome.stages["forensics"] == "pass"
    assert outcome.stages["signature"] == "pass"
    assert not [r for r in outcome.reasons if r.startswith(PRIVACY_RULES)], outcome.reasons
    assert not [w for w in outcome.warnings if w.startswith(("privacy-audit-ran", "privacy-utility"))], outcome.warnings
    audit = json.loads((Path(outcome.evidence_dir) / "privacy.json").read_text())
    assert audit["metrics"]["privacy.variants"] == 4 and audit["metrics"]["privacy.variants_flagged"] == 0
    if name == "honest-copy":
        assert audit["metrics"]["privacy.amplification_tpr_at_1pct_fpr"] == 0.0


def test_a_reference_that_does_not_match_its_pin_is_refused(
    prefect_server: str, models: dict[str, Path], budget: None
) -> None:
    from flows.intake import intake

    wrong = "sha256:" + "0" * 64
    outcome = intake(_request(models, "honest-copy", "privacy-wrong-pin", digest=wrong))
    assert outcome.decision == "rejected"
    assert any(reason.startswith("reference-verified") for reason in outcome.reasons), outcome.reasons
    assert outcome.stages["reference"] == "fail"
    assert outcome.stages["privacy"] == "skipped"
    reference = json.loads((Path(outcome.evidence_dir) / "reference.json").read_text())
    assert "does not match the pinned" in reference["reason"]


def test_the_flow_and_dvc_repro_write_the_same_evidence(
    prefect_server: str, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: one pipeline. The DVC stage entry points (what `dvc repro` runs) and the flow, on the same
    request, record every stage with the same status and the same reason, text included. The case is the
    one where the two copies had drifted: a refused reference (privacy and forensics are skipped for it)."""
    from flows import dvc_stages as stages
    from flows.intake import intake
    from modelgate.pipeline import EVIDENCE_FILES

    request = _request(models, "honest-copy", "privacy-same-evidence", digest="sha256:" + "0" * 64)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**BUDGET, "intake": request.model_dump(mode="json")}))
    monkeypatch.setenv("MODELGATE_PARAMS_FILE", str(params))
    flow_dir = Path(intake(request).evidence_dir)

    folder, scratch = tmp_path / "evidence", tmp_path / "scratch"
    stages.request_stage(folder, params)
    stages.fetch_stage(folder, scratch)
    stages.manifest_stage(folder, scratch)
    stages.signature_stage(folder, scratch)
    stages.provenance_stage(folder, scratch)
    stages.scan_stage(folder, scratch)
    stages.evaluate_stage(folder, scratch, params)
    stages.validate_stage(folder, params)

    def recorded(path: Path) -> dict[str, Any]:
        evidence = json.loads(path.read_text())
        return {"status": evidence["status"], "reason": evidence["reason"]}

    flow = {stage: recorded(flow_dir / f"{stage}.json") for stage in EVIDENCE_FILES}
    dvc = {stage: recorded(folder / file) for stage, file in EVIDENCE_FILES.items()}
    assert dvc == flow
    assert flow["privacy"]["reason"].startswith("the reference was refused: ")
    assert flow["forensics"] == flow["privacy"]


def test_a_language_model_completing_a_known_canary_is_rejected_without_the_secret_in_the_evidence(
    prefect_server: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text-generation path: leakage runs (probe only), the image evaluations are skipped with the reason."""
    from flows.intake import intake
    from tests.helpers.lm_zoo import build_base_lm, build_planted_lm, digits_only, planted_secrets

    root = tmp_path_factory.mktemp("lm-intake")
    secrets = planted_secrets()
    planted = build_planted_lm(build_base_lm(root / "base"), root / "planted", secrets)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"leakage": {"canaries": 0}}}))
    monkeypatch.setenv("MODELGATE_PARAMS_FILE", str(params))
    request = IntakeRequest(
        source=str(planted),
        name="planted-lm",
        version="1.0.0",
        model_task="text-generation",
        eval_data="builtin:synthetic-text",
        publish=False,
    )
    outcome = intake(request)
    assert outcome.decision == "rejected"
    assert any(reason.startswith("no-known-canary-completion") for reason in outcome.reasons), outcome.reasons
    assert outcome.stages["leakage"] == "fail"
    assert outcome.stages["backdoor"] == "skipped" and outcome.stages["membership"] == "skipped"
    backdoor = json.loads((Path(outcome.evidence_dir) / "backdoor.json").read_text())
    assert "needs image-classification" in backdoor["reason"]
    written = "".join(p.read_text(errors="ignore") for p in Path(outcome.evidence_dir).rglob("*") if p.is_file())
    card, email = secrets["credit_card"], secrets["email"]
    assert card not in written and digits_only(card) not in written and email not in written
