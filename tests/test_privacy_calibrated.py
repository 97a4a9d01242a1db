"""The calibrated (LiRA-style) attack of the privacy audit, and the low-rank (LoRA) fine-tuning recipe.

The calibrated score subtracts each canary's own mean score in the model's other fine-tunes where
it was not a member, so a canary that always moves a lot is not taken for a member: an attack whose
members stand out only against their own OUT runs is found by it and missed by the plain LOSS attack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.evaluate.data import load_eval_data
from tasks.evaluate.privacy.audit import DEFAULT_AUDIT_PARAMS, Margins, calibrated_scores, member_masks, run_audit
from tasks.evaluate.privacy.finetune import ClassifierCanaryTrainer, Recipe, make_image_canaries
from tests.helpers.privacy_zoo import privacy_models

MARGINS = Margins(DEFAULT_AUDIT_PARAMS["margin"], DEFAULT_AUDIT_PARAMS["auc_margin"])


def test_calibrated_scores_leave_the_records_own_run_out() -> None:
    scores = np.array([[1.0, 5.0], [2.0, 7.0], [4.0, 9.0]])
    masks = np.array([[True, False], [False, False], [False, True]])
    cal = calibrated_scores(scores, masks)
    # canary 0 is out in runs 1 and 2: run 0 (in) against their mean 3; run 1 against run 2 alone; run 2 against run 1
    assert cal[:, 0] == pytest.approx([1.0 - 3.0, 2.0 - 4.0, 4.0 - 2.0])
    # canary 1 is out in runs 0 and 1 only: run 2 (in) against their mean 6
    assert cal[:, 1] == pytest.approx([5.0 - 7.0, 7.0 - 5.0, 9.0 - 6.0])


def test_a_record_without_another_out_run_is_left_out() -> None:
    scores = np.arange(4.0).reshape(2, 2)
    masks = np.array([[True, False], [False, True]])  # each canary out once: its out record has no other
    cal = calibrated_scores(scores, masks)
    assert np.isnan(cal[1, 0]) and np.isnan(cal[0, 1])
    assert cal[0, 0] == pytest.approx(0.0 - 2.0) and cal[1, 1] == pytest.approx(3.0 - 1.0)


class _Difficulty:
    """Scores = a fixed per-canary difficulty (large) + noise + ``shift`` for members."""

    def __init__(self, difficulty: np.ndarray, shift: float, seed: int) -> None:
        self.difficulty, self.shift = difficulty, shift
        self.rng = np.random.default_rng(seed)

    def canary_count(self) -> int:
        return len(self.difficulty)

    def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        noise = self.rng.normal(scale=0.3, size=len(self.difficulty))
        return self.difficulty + noise + self.shift * member_mask, 0.9


def test_members_standing_out_against_their_own_out_runs_are_found_by_the_calibrated_attack_only() -> None:
    difficulty = np.random.default_rng(0).normal(scale=5.0, size=400)
    result = run_audit(_Difficulty(difficulty, 1.5, 1), _Difficulty(difficulty, 0.0, 2), k=8, bootstrap=300)
    assert not result.flagged_overall(MARGINS)  # the LOSS attack drowns in the canaries' difficulty
    assert result.calibrated is not None and result.flagged_calibrated(MARGINS) and result.flagged(MARGINS)
    assert result.calibrated.candidate_tpr > 0.3 > result.calibrated.reference_tpr
    metrics = result.metrics(MARGINS)
    assert metrics["privacy.calibrated_amplification_ci_low"] > MARGINS.tpr


def test_models_alike_are_not_flagged_by_the_calibrated_attack() -> None:
    difficulty = np.random.default_rng(3).normal(scale=5.0, size=400)
    for seed in range(3):
        result = run_audit(
            _Difficulty(difficulty, 1.0, 10 + seed), _Difficulty(difficulty, 1.0, 20 + seed), k=8, seed=seed,
            bootstrap=300, confidence=1 - 0.05 / 5,
        )  # fmt: skip
        assert result.calibrated is not None
        assert not result.flagged_calibrated(MARGINS), result.calibrated.to_dict()


def _trainer(folder: Path, recipe: dict[str, object]) -> ClassifierCanaryTrainer:
    data = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    split = make_image_canaries(data, 60, seed=0)
    return ClassifierCanaryTrainer(
        folder, split.canaries_x, split.canaries_y, split.fine_tune_x, split.fine_tune_y,
        split.held_out_x, split.held_out_y, recipe, "cpu",
    )  # fmt: skip


def test_a_lora_copy_starts_as_the_model_and_trains_only_its_factors(tmp_path_factory: pytest.TempPathFactory) -> None:
    reference = privacy_models(tmp_path_factory)["reference"]
    recipe = {"steps": 8, "layers": "lora", "rank": 2, "batch_size": 32, "lr": 0.01, "optimizer": "adam"}
    lora = _trainer(reference, {**recipe, "parallel": 2})
    full = _trainer(reference, {**recipe, "layers": "all"})
    assert np.allclose(lora.loss_before().numpy(), full.loss_before().numpy(), atol=1e-5)  # B = 0: the model itself
    masks = member_masks(2, 60, seed=0)
    params = lora._finetune(masks, [1, 2])
    assert set(params) == {f"classifier.{i}.lora_{f}" for i in (1, 3) for f in "ab"}
    assert params["classifier.1.lora_a"].shape == (2, 2, lora.model.classifier[1].in_features)
    scores, utility = lora.finetune_and_score_many(masks, [1, 2])
    one_by_one = _trainer(reference, {**recipe, "parallel": 1})
    sequential = [one_by_one.finetune_and_score(mask, seed) for mask, seed in zip(masks, [1, 2], strict=True)]
    assert np.allclose(scores, np.stack([s for s, _ in sequential]), atol=1e-3)
    assert np.abs(scores).max() > 0 and (utility > 0.5).all()  # it learned, and kept the model useful


def test_the_lora_fast_path_matches_the_full_model(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = privacy_models(tmp_path_factory)["reference"]
    recipe = {"steps": 10, "layers": "lora", "batch_size": 32, "lr": 0.01, "optimizer": "adam"}
    fast = _trainer(reference, recipe)
    assert fast.suffix == "classifier"  # the convolutional body ran once; the copies train the classifier alone
    monkeypatch.setattr(ClassifierCanaryTrainer, "_cache_lora_inputs", lambda self: None)
    full = _trainer(reference, recipe)
    assert full.suffix == ""
    masks = member_masks(2, 60, seed=4)
    fast_scores, fast_utility = fast.finetune_and_score_many(masks, [3, 4])
    full_scores, full_utility = full.finetune_and_score_many(masks, [3, 4])
    assert np.allclose(fast_scores, full_scores, atol=1e-3)
    assert np.allclose(fast_utility, full_utility)


def test_the_lora_rank_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rank"):
        Recipe(layers="lora", rank=0)
    with pytest.raises(ValueError, match="layers"):
        Recipe(layers="adapters")
