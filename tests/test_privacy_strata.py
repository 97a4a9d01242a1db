"""The privacy-backdoor audit against concentrated attacks: per class, record by record, over its variants.

The unit tests drive the statistics with synthetic scores; the live tests build our own
reproduction of the attack (tests/helpers/privacy_attacks.py), prove on a simulated victim that it
really exposes the victim's fine-tuning data before using it, and then check that the audit
rejects it, names what carries the leak, and passes honest models.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from modelgate.evidence import Status
from tasks.evaluate.privacy.audit import (
    DEFAULT_AUDIT_PARAMS,
    Margins,
    Strata,
    audit_variants,
    member_masks,
    privacy_audit_stage,
    record_test,
    run_audit,
    stratum_figures,
)
from tests.helpers.privacy_attacks import eval_images, privacy_backdoor, target_mask, victim_amplification
from tests.helpers.privacy_zoo import privacy_models

MARGINS = Margins(DEFAULT_AUDIT_PARAMS["margin"], DEFAULT_AUDIT_PARAMS["auc_margin"], 2)
STRATA = 10


def _scores(k: int, count: int, shift: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, count) member masks and scores: noise plus ``shift`` (per canary) for members."""
    masks = member_masks(k, count, seed)
    noise = np.random.default_rng(seed + 1).normal(size=(k, count))
    return masks, noise + masks * shift[None, :]


class _Fixed:
    """A canary trainer replaying precomputed (k, canaries) scores for the masks ``run_audit`` draws."""

    def __init__(self, shift: np.ndarray, seed: int) -> None:
        self.shift, self.rng = shift, np.random.default_rng(seed)

    def canary_count(self) -> int:
        return len(self.shift)

    def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        return self.rng.normal(size=len(self.shift)) + member_mask * self.shift, 0.9


def test_an_attack_on_one_class_is_flagged_in_its_stratum_not_in_the_pool() -> None:
    count = 400
    index = np.arange(count) % STRATA
    strata = Strata(index, tuple(str(c) for c in range(STRATA)), "class")
    shift = np.where(index == 3, 1.5, 0.0)  # one class in ten leaks
    result = run_audit(_Fixed(shift, 1), _Fixed(np.zeros(count), 2), k=4, seed=0, bootstrap=300, strata=strata)
    assert not result.flagged_overall(MARGINS.tpr)  # the pooled TPR figure alone misses it
    assert [s.name for s in result.flagged_strata(MARGINS)] == ["3"]
    assert result.flagged(MARGINS)
    assert result.strata_confidence == pytest.approx(1 - 0.05 / STRATA)
    metrics = result.metrics(MARGINS)
    assert metrics["privacy.strata"] == STRATA and metrics["privacy.strata_flagged"] == 1
    assert metrics["privacy.worst_stratum_auc_ci_low"] > MARGINS.auc  # flagged on the AUC: 40 canaries are few


def test_noise_in_ten_strata_is_not_flagged_because_of_the_correction() -> None:
    """Same records, no leak: with ten tests at the corrected level no seed flags a stratum."""
    count = 400
    strata = Strata(np.arange(count) % STRATA, tuple(str(c) for c in range(STRATA)), "class")
    flagged = 0
    for seed in range(6):
        result = run_audit(
            _Fixed(np.zeros(count), seed), _Fixed(np.zeros(count), 100 + seed), k=4, seed=seed, bootstrap=300,
            strata=strata,
        )  # fmt: skip
        flagged += bool(result.flagged_strata(MARGINS))
    assert flagged == 0


def test_small_strata_are_reported_not_tested() -> None:
    masks, scores = _scores(4, 60, np.zeros(60), seed=0)
    index = np.array([0] * 50 + [1] * 10)
    strata = Strata(index[:60], ("big", "small"), "class")
    rows, level = stratum_figures(scores, scores, masks, strata, 20, 100, 0.95, 0)
    assert [(r.name, r.difference is not None) for r in rows] == [("big", True), ("small", False)]
    assert level == pytest.approx(0.95)  # one stratum tested: no correction


def test_a_few_leaking_records_pass_the_record_threshold_and_noise_does_not() -> None:
    count = 300
    shift = np.zeros(count)
    shift[[5, 50, 150, 250]] = 12.0
    masks, candidate = _scores(6, count, shift, seed=3)
    _, reference = _scores(6, count, np.zeros(count), seed=4)
    test = record_test(candidate, reference, masks, confidence=0.95)
    assert sorted(test.outliers) == [5, 50, 150, 250]
    assert test.flagged(2)
    honest = record_test(reference, candidate - masks * shift[None, :], masks, confidence=0.95)
    assert not honest.flagged(2)


def test_the_variants_cover_both_canary_kinds_and_every_recipe() -> None:
    names = [v.name for v in audit_variants(DEFAULT_AUDIT_PARAMS)]
    assert names == [
        "mislabeled canaries, all layers",
        "mislabeled canaries, last layers",
        "mislabeled canaries, lora layers",
        "true_label canaries, all layers",
        "true_label canaries, last layers",
        "true_label canaries, lora layers",
    ]
    section = {**DEFAULT_AUDIT_PARAMS, "recipe": {**DEFAULT_AUDIT_PARAMS["recipe"], "layers": "last"}}
    assert len(audit_variants(section)) == 4  # the recipe's own layers are not run twice


# ----------------------------------------------------------------------------------------------- live


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return privacy_models(tmp_path_factory)["reference"]


@pytest.fixture(scope="module")
def attacks(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    """Our privacy backdoors aimed at one class and at 20 records, each verified on a simulated victim."""
    import torch

    root = tmp_path_factory.mktemp("privacy-attacks")
    x, y = eval_images(reference)
    built: dict[str, tuple[Path, np.ndarray]] = {}
    for variant in ("class", "records"):
        mask = target_mask(y, variant)
        chosen = torch.from_numpy(mask)
        folder = privacy_backdoor(reference, root / variant, x[chosen], y[chosen])
        built[variant] = (folder, mask)
    return built


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["class", "records"])
def test_the_attack_really_exposes_the_victims_data(
    reference: Path, attacks: dict[str, tuple[Path, np.ndarray]], variant: str
) -> None:
    """Before the audit sees it: a victim's fine-tune on half the targets, and a plain LOSS attack."""
    folder, mask = attacks[variant]
    victim = victim_amplification(folder, reference, mask, head_only=True)
    assert victim.reference_tpr <= 0.05  # the reference does not expose its fine-tuning data
    assert victim.candidate_auc > victim.reference_auc + 0.3  # the candidate does
    if variant == "class":
        assert victim.candidate_tpr >= 0.5  # at the paper's magnitude: most members identified at 1% FPR


@pytest.mark.slow
def test_an_attack_on_one_class_is_rejected_naming_the_class(
    reference: Path, attacks: dict[str, tuple[Path, np.ndarray]], tmp_path: Path
) -> None:
    folder, _ = attacks["class"]
    evidence = privacy_audit_stage(folder, reference, "sklearn:digits", None, tmp_path)
    m = evidence.metrics
    assert evidence.status is Status.FAIL, evidence.reason
    assert "concentrated on '3'" in (evidence.reason or "")
    assert m["privacy.amplification_ci_low"] <= MARGINS.tpr  # the pooled TPR figure alone would pass it
    assert m["privacy.worst_stratum_auc_ci_low"] > MARGINS.auc and m["privacy.variants_flagged"] >= 1
    rows = {row["stratum"]: row for row in evidence.details["strata"]["rows"]}
    assert rows["3"]["flagged"] and not any(r["flagged"] for name, r in rows.items() if name != "3")
    with (tmp_path / "privacy" / "strata.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == STRATA and {r["stratum"] for r in written if r["flagged"] == "True"} == {"3"}
    assert (tmp_path / "privacy" / "variants.csv").is_file()


@pytest.mark.slow
def test_an_attack_on_a_few_records_is_rejected_record_by_record(
    reference: Path, attacks: dict[str, tuple[Path, np.ndarray]]
) -> None:
    folder, _ = attacks["records"]
    evidence = privacy_audit_stage(folder, reference, "sklearn:digits")
    m = evidence.metrics
    assert evidence.status is Status.FAIL, evidence.reason
    assert "aimed at a few records" in (evidence.reason or "")
    assert m["privacy.outlier_records"] > 2
    assert m["privacy.worst_stratum_ci_low"] <= MARGINS.tpr  # no class carries it


@pytest.mark.slow
@pytest.mark.parametrize("name", ["independent", "head-tuned"])
def test_honest_models_pass_every_variant(reference: Path, name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    evidence = privacy_audit_stage(privacy_models(tmp_path_factory)[name], reference, "sklearn:digits")
    m = evidence.metrics
    assert evidence.status is Status.PASS, evidence.reason
    assert m["privacy.variants"] == 6 and m["privacy.variants_flagged"] == 0
    assert m["privacy.strata"] == STRATA and m["privacy.strata_flagged"] == 0
    assert m["privacy.outlier_records"] <= 2
