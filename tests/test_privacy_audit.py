"""The privacy-backdoor audit: paired fine-tunes, the batched trainer, and the stage on a poisoned candidate.

The poisoned candidate (tests/privacy_zoo.py) keeps the reference's clean accuracy and is audited
with an organization recipe that fine-tunes the head; the margin is the default one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelgate.evidence import Status
from tasks.evaluate.data import load_eval_data
from tasks.evaluate.privacy import audit as audit_module
from tasks.evaluate.privacy.audit import DEFAULT_AUDIT_PARAMS, member_masks, privacy_audit_stage, run_audit
from tasks.evaluate.privacy.finetune import ClassifierCanaryTrainer, make_image_canaries
from tests.helpers.privacy_attacks import eval_images, victim_amplification
from tests.helpers.privacy_zoo import clean_accuracy, privacy_models

MARGIN = DEFAULT_AUDIT_PARAMS["margin"]
HEAD_RECIPE = {"k": 8, "recipe": {"layers": "last"}}  # an organization that fine-tunes the classification head


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return privacy_models(tmp_path_factory)


class FakeTrainer:
    """Scores = noise + ``shift`` for members; records the masks and seeds it was given."""

    def __init__(self, count: int, shift: float, noise_seed: int = 1) -> None:
        self.count, self.shift = count, shift
        self.noise = np.random.default_rng(noise_seed)
        self.calls: list[tuple[np.ndarray, int]] = []

    def canary_count(self) -> int:
        return self.count

    def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        self.calls.append((member_mask.copy(), seed))
        return self.noise.normal(size=self.count) + self.shift * member_mask, 0.9 - 0.1 * self.shift


def test_member_masks_are_exact_halves_and_differ_between_runs() -> None:
    masks = member_masks(4, 101, seed=3)
    assert masks.shape == (4, 101) and (masks.sum(axis=1) == 50).all()
    assert len({m.tobytes() for m in masks}) == 4
    assert (member_masks(4, 101, seed=3) == masks).all()


def test_run_audit_pairs_runs_and_measures_amplification() -> None:
    candidate, reference = FakeTrainer(400, shift=3.0), FakeTrainer(400, shift=0.0)
    result = run_audit(candidate, reference, k=3, seed=5, bootstrap=300)
    for (mask_c, seed_c), (mask_r, seed_r) in zip(candidate.calls, reference.calls, strict=True):
        assert (mask_c == mask_r).all() and seed_c == seed_r  # run i: one mask, one seed for both models
    assert result.members.shape == (3, 400)
    assert result.candidate.tpr[0.01].value > 0.5 and result.reference.tpr[0.01].value < 0.1
    assert result.amplification.low > MARGIN and result.flagged(MARGIN)
    metrics = result.metrics(MARGIN)
    assert metrics["privacy.utility_drop"] == pytest.approx(0.3)
    assert metrics["privacy.finetunes"] == 3 and metrics["privacy.canaries"] == 400


def test_identical_models_have_zero_amplification() -> None:
    result = run_audit(FakeTrainer(300, 1.0, noise_seed=9), FakeTrainer(300, 1.0, noise_seed=9), k=2, bootstrap=200)
    amp = result.amplification
    assert (amp.value, amp.low, amp.high) == (0.0, 0.0, 0.0)
    assert not result.flagged(MARGIN)


def test_run_audit_refuses_mismatched_canary_sets() -> None:
    with pytest.raises(ValueError, match="canaries"):
        run_audit(FakeTrainer(10, 0.0), FakeTrainer(12, 0.0), k=1)


def _trainer(folder: Path, recipe: dict[str, object], count: int = 60) -> ClassifierCanaryTrainer:
    data = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    split = make_image_canaries(data, count, seed=0)
    return ClassifierCanaryTrainer(
        folder, split.canaries_x, split.canaries_y, split.fine_tune_x, split.fine_tune_y,
        split.held_out_x, split.held_out_y, recipe, "cpu",
    )  # fmt: skip


def test_canaries_are_distinct_mislabeled_images_disjoint_from_the_rest() -> None:
    data = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    split = make_image_canaries(data, 10_000, seed=0)
    assert split.design["canaries"] == len(split.canaries_y) < 10_000  # capped at the distinct images
    flat = split.canaries_x.flatten(1)
    true = data.y[torch.cdist(flat, data.x.flatten(1)).argmin(1)]
    assert (true != split.canaries_y).all()  # every canary carries a wrong label
    others = torch.cat([split.fine_tune_x.flatten(1), split.held_out_x.flatten(1)])
    assert torch.cdist(flat, others).min() > 0  # no canary image is also fine-tuned on or held out


def test_batched_finetune_matches_sequential_and_repeats(models: dict[str, Path]) -> None:
    masks = member_masks(2, 60, seed=0)
    recipe = {"steps": 5, "layers": "all", "batch_size": 32}
    batched = _trainer(models["reference"], {**recipe, "parallel": 2})
    scores, utility = batched.finetune_and_score_many(masks, [11, 12])
    again, _ = batched.finetune_and_score_many(masks, [11, 12])
    sequential = _trainer(models["reference"], {**recipe, "parallel": 1})
    one_by_one = [sequential.finetune_and_score(mask, seed) for mask, seed in zip(masks, [11, 12], strict=True)]
    assert np.array_equal(scores, again)
    assert np.allclose(scores, np.stack([s for s, _ in one_by_one]), atol=1e-3)
    assert np.allclose(utility, [u for _, u in one_by_one])
    assert np.abs(scores).max() > 0  # fine-tuning moved the canary losses


def test_head_fast_path_matches_the_full_model(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    masks = member_masks(2, 60, seed=1)
    recipe = {"steps": 20, "layers": "last", "batch_size": 32}
    fast = _trainer(models["reference"], recipe)
    assert fast.head_only
    monkeypatch.setattr(ClassifierCanaryTrainer, "_cache_head_inputs", lambda self: None)
    full = _trainer(models["reference"], recipe)
    assert not full.head_only
    fast_scores, fast_utility = fast.finetune_and_score_many(masks, [1, 2])
    full_scores, full_utility = full.finetune_and_score_many(masks, [1, 2])
    assert np.allclose(fast_scores, full_scores, atol=1e-3)
    assert np.allclose(fast_utility, full_utility)


def test_poisoned_candidate_is_flagged(models: dict[str, Path], tmp_path: Path) -> None:
    assert clean_accuracy(models["poisoned"]) > clean_accuracy(models["reference"]) - 0.02  # the poison is quiet
    _, labels = eval_images(models["reference"])
    victim = victim_amplification(models["poisoned"], models["reference"], np.ones(len(labels), dtype=bool))
    assert victim.candidate_auc > victim.reference_auc + 0.1  # it really exposes a victim's data (all records)
    evidence = privacy_audit_stage(models["poisoned"], models["reference"], "sklearn:digits", HEAD_RECIPE, tmp_path)
    m = evidence.metrics
    assert evidence.status == Status.FAIL, evidence.reason
    assert m["privacy.flagged"] is True and m["privacy.amplification_ci_low"] > MARGIN
    assert m["privacy.candidate_tpr_at_1pct_fpr"] > m["privacy.reference_tpr_at_1pct_fpr"] + 0.1
    assert m["privacy.amplification_auc_ci_low"] > 0.1
    assert "amplification" in (evidence.reason or "")
    folder = tmp_path / "privacy"
    with (folder / "roc.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"candidate", "reference"} and set(rows[0]) == {"model", "fpr", "tpr"}
    summary = json.loads((folder / "amplification.json").read_text())
    assert summary["flagged"] is True and summary["margin"] == MARGIN
    assert (folder / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (folder / "membership_scores.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 2 * m["privacy.finetunes"] * m["privacy.canaries"]
    assert evidence.details["candidate"]["roc"]
    assert evidence.details["canary_design"]["canaries"] == m["privacy.canaries"]


@pytest.mark.parametrize("name", ["honest-copy", "independent"])
def test_honest_models_are_not_flagged(models: dict[str, Path], name: str) -> None:
    evidence = privacy_audit_stage(models[name], models["reference"], "sklearn:digits", HEAD_RECIPE)
    m = evidence.metrics
    assert evidence.status == Status.PASS, evidence.reason
    assert m["privacy.flagged"] is False
    assert m["privacy.amplification_ci_low"] <= 0.0 <= m["privacy.amplification_ci_high"]
    if name == "honest-copy":
        assert m["privacy.amplification_tpr_at_1pct_fpr"] == 0.0 and m["privacy.utility_drop"] == 0.0


def test_refusals_are_skips_with_a_reason(models: dict[str, Path], tmp_path: Path) -> None:
    none = privacy_audit_stage(models["poisoned"], None, "sklearn:digits")
    assert none.status == Status.SKIPPED and none.reason == "no reference checkpoint named in the request"
    other = privacy_audit_stage(models["mismatched"], models["reference"], "sklearn:digits")
    assert other.status == Status.SKIPPED and "differ in architecture" in (other.reason or "")
    folders = []
    for name in ("a", "b"):  # same architecture, a task the audit does not cover
        folder = tmp_path / name
        folder.mkdir()
        config = json.loads((models["reference"] / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_task": "object-detection"}))
        (folder / "model.safetensors").write_bytes((models["reference"] / "model.safetensors").read_bytes())
        folders.append(folder)
    task = privacy_audit_stage(folders[0], folders[1], "sklearn:digits")
    assert task.status == Status.SKIPPED and "object-detection" in (task.reason or "")
    bad = privacy_audit_stage(models["poisoned"], models["reference"], "sklearn:digits", {"finetunes": 3})
    assert bad.status == Status.ERROR and "finetunes" in (bad.reason or "")


def _tiny_lm_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    save_file({"lm_head.weight": torch.zeros(4, 2)}, str(folder / "model.safetensors"))
    return folder


def test_language_models_go_to_the_lm_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.evaluate.privacy import lm

    built: list[tuple[Path, int, int, int, dict[str, object]]] = []

    class Recorder:
        def __init__(self, model_dir, canaries, fine_tune_texts, held_out_texts, recipe, device) -> None:
            built.append((Path(model_dir), len(canaries), len(fine_tune_texts), len(held_out_texts), recipe))
            self.count, self.poisoned = len(canaries), Path(model_dir).name == "candidate"

        def canary_count(self) -> int:
            return self.count

        def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
            noise = np.random.default_rng(seed).normal(size=self.count)
            return member_mask * (5.0 if self.poisoned else 0.0) + noise, 1.0

    monkeypatch.setattr(lm, "LMCanaryTrainer", Recorder)
    candidate, reference = _tiny_lm_folder(tmp_path / "candidate"), _tiny_lm_folder(tmp_path / "reference")
    params = {"canaries": 200, "k": 2, "bootstrap": 100}
    evidence = privacy_audit_stage(candidate, reference, lm.SYNTHETIC_TEXT, params)
    assert evidence.status == Status.FAIL, evidence.reason
    assert [b[0].name for b in built] == ["candidate", "reference"] and built[0][1] == 200
    assert set(built[0][4]) <= set(audit_module.LM_RECIPE_KEYS)  # only the keys the LM recipe knows
    assert evidence.details["strata"]["tested"] == len(lm.AUDIT_TOPICS)  # one stratum per topic
    assert evidence.details["records"] is not None  # PII strings are judged record by record too
    monkeypatch.delattr(lm, "LMCanaryTrainer")
    missing = privacy_audit_stage(candidate, reference, lm.SYNTHETIC_TEXT, params)
    assert missing.status == Status.SKIPPED and missing.reason == "language-model audit not available"


def test_a_language_model_backdoor_aimed_at_one_topic_is_found_in_its_stratum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.evaluate.privacy import lm

    texts, topics = lm.make_topic_canaries(500, 0)
    assert len(set(texts)) == 500 and sorted(set(topics)) == list(range(len(lm.AUDIT_TOPICS)))
    medical = [name for name, _ in lm.AUDIT_TOPICS].index("medical note")
    assert all(t.startswith("Patient ") for t, topic in zip(texts, topics, strict=True) if topic == medical)

    class TopicLeak:
        """Members of the medical notes leak on the candidate (a shift of 1 against unit noise); nothing else."""

        def __init__(self, model_dir, canaries, fine_tune_texts, held_out_texts, recipe, device) -> None:
            self.aimed = np.array([c.startswith("Patient ") for c in canaries]) * (Path(model_dir).name == "candidate")

        def canary_count(self) -> int:
            return len(self.aimed)

        def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
            noise = np.random.default_rng(seed + 1000 * int(self.aimed.any())).normal(size=len(self.aimed))
            return noise + 1.0 * (member_mask & self.aimed), 1.0

    monkeypatch.setattr(lm, "LMCanaryTrainer", TopicLeak)
    candidate, reference = _tiny_lm_folder(tmp_path / "candidate"), _tiny_lm_folder(tmp_path / "reference")
    evidence = privacy_audit_stage(candidate, reference, lm.SYNTHETIC_TEXT, {"canaries": 500, "k": 4, "bootstrap": 300})
    m = evidence.metrics
    assert evidence.status == Status.FAIL, evidence.reason
    assert "concentrated on 'medical note'" in (evidence.reason or "")
    assert m["privacy.strata_flagged"] == 1
    assert m["privacy.worst_stratum_auc_ci_low"] > m["privacy.amplification_auc_ci_low"]
