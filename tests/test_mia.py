"""Membership inference: a deliberately overfit CNN leaks, a regularized one does not; the stage's contract.

Two targets with the demo's architecture: ``overfit`` trains 40 epochs on 200 digits with no weight
decay (train accuracy 1.0, test about 0.93); ``regularized`` is the demo recipe on the whole training
split (1,347 digits) with weight decay (test about 0.99). Both are attacked with LOSS and offline LiRA
(4 reference models, a smaller budget than params.yaml) and compared through the bootstrap intervals
of the attack figures; no threshold is tuned here, the comparisons are the attacks' own intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modelgate.demo.build import IMAGE_SIDE, LEARNING_RATE, _config, _reproducible, digits_dataset
from modelgate.demo.cnn import save_weights, write_config
from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.png import decode_png
from tasks.evaluate.privacy.members import NO_MEMBERSHIP, load_membership_data
from tasks.evaluate.privacy.mia import (
    LiraConfig,
    ShadowRecipe,
    balanced_assignment,
    fresh_copies,
    lira_offline,
    logit_confidence,
    loss_scores,
    membership_stage,
    out_selection,
    reference_logits,
    shadow_batches,
    train_reference_models,
)

BUDGET = {"membership": {"reference_models": 4, "bootstrap": 300, "shadow": {"epochs": 20}}}
OVERFIT_RECORDS = 200


def train_target(records: int, epochs: int, weight_decay: float, out: Path) -> Path:
    """The demo CNN trained on the first ``records`` training digits (seed 0), written as a model folder."""
    data = digits_dataset(0)
    x, y = data.train_x[:records], data.train_y[:records]
    config = _config(data, 0, epochs)
    generator = torch.Generator().manual_seed(0)
    with _reproducible(0):
        from modelgate.demo.cnn import build_model

        model = build_model(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=weight_decay)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(records, generator=generator).split(32):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    out.mkdir(parents=True)
    save_weights(model, out)
    write_config(out, config)
    return out


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Model folder and membership data of each target (the regularized one uses the builtin digits split)."""
    root = tmp_path_factory.mktemp("mia")
    data = digits_dataset(0)
    overfit = train_target(OVERFIT_RECORDS, 40, 0.0, root / "overfit")
    x = torch.cat([data.train_x[:OVERFIT_RECORDS], data.test_x]).numpy()
    y = torch.cat([data.train_y[:OVERFIT_RECORDS], data.test_y]).numpy()
    member = np.r_[np.ones(OVERFIT_RECORDS, bool), np.zeros(len(data.test_y), bool)]
    np.savez(root / "overfit.npz", x=x, y=y, member=member)
    regularized = train_target(len(data.train_y), 12, 5e-4, root / "regularized")
    return {"overfit": (overfit, str(root / "overfit.npz")), "regularized": (regularized, "sklearn:digits")}


@pytest.fixture(scope="module")
def evidence(
    targets: dict[str, tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, StageEvidence]:
    out = tmp_path_factory.mktemp("mia-out")
    return {name: membership_stage(model, ref, BUDGET, out / name) for name, (model, ref) in targets.items()}


def test_the_targets_differ_in_generalization(evidence: dict[str, StageEvidence]) -> None:
    for result in evidence.values():
        assert result.status is Status.PASS, result.reason
    overfit, regularized = evidence["overfit"].metrics, evidence["regularized"].metrics
    assert overfit["membership.train_accuracy"] == 1.0
    gap = overfit["membership.train_accuracy"] - overfit["membership.test_accuracy"]
    assert gap > regularized["membership.train_accuracy"] - regularized["membership.test_accuracy"]


@pytest.mark.parametrize("attack", ["lira", "loss"])
def test_overfit_model_leaks_more_than_the_regularized_one(evidence: dict[str, StageEvidence], attack: str) -> None:
    overfit, regularized = evidence["overfit"].metrics, evidence["regularized"].metrics
    assert overfit[f"membership.{attack}_auc_ci_low"] > regularized[f"membership.{attack}_auc"], (overfit, regularized)


def test_lira_beats_chance_on_the_overfit_model(evidence: dict[str, StageEvidence]) -> None:
    metrics = evidence["overfit"].metrics
    assert metrics["membership.lira_auc_ci_low"] > 0.5
    assert metrics["membership.lira_tpr_at_1pct_fpr"] > 0.01  # chance: TPR = FPR


def test_membership_evidence_and_artifacts(evidence: dict[str, StageEvidence], targets) -> None:
    result = evidence["regularized"]
    metrics, details = result.metrics, result.details
    assert metrics["membership.members"] == 1347 and metrics["membership.non_members"] == 450
    assert metrics["membership.reference_models"] == 4
    for attack in ("loss", "lira"):
        for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
            low, value, high = (metrics[f"membership.{attack}_{key}{s}"] for s in ("_ci_low", "", "_ci_high"))
            assert 0.0 <= low <= value <= high <= 1.0
        assert details[attack]["roc"][0]["fpr"] == 0.0 and details[attack]["roc"][-1] == {"fpr": 1.0, "tpr": 1.0}
    assert details["lira"]["config"]["out_models"] == 2 and len(details["lira"]["reference_accuracy_out"]) == 4
    assert result.inputs["eval_data"].startswith("sha256:")
    artifacts = details["artifacts"]
    roc = Path(artifacts["roc_csv"]).read_text().splitlines()
    assert roc[0] == "attack,fpr,tpr" and {line.split(",")[0] for line in roc[1:]} == {"loss", "lira"}
    scores = Path(artifacts["scores_csv"]).read_text().splitlines()
    assert scores[0] == "index,member,loss,lira" and len(scores) == 1 + 1347 + 450
    assert sum(int(line.split(",")[1]) for line in scores[1:]) == 1347
    assert decode_png(Path(artifacts["roc_png"]).read_bytes()).shape[2] == 3
    json.dumps(details)  # the evidence serializes


def test_skipped_when_the_data_does_not_say_who_was_a_member(targets, tmp_path: Path) -> None:
    model, _ = targets["overfit"]
    data = digits_dataset(0)
    np.savez(tmp_path / "plain.npz", x=data.test_x.numpy(), y=data.test_y.numpy())
    folder = tmp_path / "images"
    (folder / "0").mkdir(parents=True)
    for ref in (str(tmp_path / "plain.npz"), str(folder)):
        result = membership_stage(model, ref, BUDGET, tmp_path / "out")
        assert result.status is Status.SKIPPED, result.reason
        assert NO_MEMBERSHIP in (result.reason or "")


def test_skipped_for_a_model_that_is_not_an_image_classifier(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    result = membership_stage(tmp_path, "sklearn:digits", BUDGET, tmp_path / "out")
    assert result.status is Status.SKIPPED
    assert "image classifier" in (result.reason or "")


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (np.ones(5, bool), "membership labels for"),
        (np.full(650, 2), "booleans or 0/1"),
        (np.ones(650, bool), "non-members"),
    ],
)
def test_bad_membership_data_is_an_error_with_one_line(targets, tmp_path: Path, member: np.ndarray, message: str):
    model, _ = targets["overfit"]
    data = digits_dataset(0)
    x = torch.cat([data.train_x[:200], data.test_x]).numpy()
    y = torch.cat([data.train_y[:200], data.test_y]).numpy()
    np.savez(tmp_path / "bad.npz", x=x, y=y, member=member)
    result = membership_stage(model, str(tmp_path / "bad.npz"), BUDGET, tmp_path / "out")
    assert result.status is Status.ERROR
    assert message in (result.reason or "") and "\n" not in (result.reason or "")


def test_builtin_digits_members_are_the_demo_training_split() -> None:
    data = load_membership_data("sklearn:digits", input_shape=(1, IMAGE_SIDE, IMAGE_SIDE), num_classes=10)
    split = digits_dataset(0)
    assert torch.equal(data.x[data.member], split.train_x) and torch.equal(data.x[~data.member], split.test_x)
    rgb = load_membership_data("sklearn:digits", input_shape=(3, 8, 8), num_classes=10)
    assert rgb.x.shape == (1797, 3, 8, 8)


def test_balanced_design_and_out_selection() -> None:
    mask = balanced_assignment(450, 8, 4, seed=0)
    assert mask.shape == (8, 450)
    assert set(mask.sum(axis=1)) == {4 * (450 // 8)}  # equal training sets
    per_record = mask.sum(axis=0)
    assert set(per_record) <= {0, 4} and (per_record == 0).sum() == 450 % 8  # the cut's leftovers are OUT for all
    full = np.concatenate([np.zeros((8, 100), bool), mask], axis=1)  # 100 members: OUT for every model
    out = out_selection(full, 4, seed=0)
    assert (out.sum(axis=0) == 4).all() and not (out & full).any()


def test_logit_confidence_is_the_log_odds_of_the_true_class() -> None:
    logits = torch.randn(3, 5, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (5,))
    p = logits.softmax(-1).gather(-1, y.expand(3, 5).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logit_confidence(logits, y), torch.log(p / (1 - p)))
    ce = torch.nn.functional.cross_entropy(logits[0], y, reduction="none")
    assert np.allclose(loss_scores(logits[0], y), -ce.numpy())
    confident = torch.tensor([[60.0, 0.0], [70.0, 0.0]])  # float32 cross-entropy rounds both to 0
    assert len(set(loss_scores(confident, torch.tensor([0, 0])))) == 2


def _tiny(batch_norm: bool) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(1, 4, 3, padding=1)]
    layers += [torch.nn.BatchNorm2d(4)] if batch_norm else []
    layers += [torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)]
    return torch.nn.Sequential(*layers)


def test_batched_reference_models_train_exactly_like_one_at_a_time() -> None:
    """The vmapped step (stacked weights, one Adam) equals K separate models with the same batches."""
    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 3, (40,))
    mask = balanced_assignment(40, 4, 2, seed=1)
    recipe = ShadowRecipe(epochs=3, lr=0.01, batch_size=8, weight_decay=1e-3)
    template = _tiny(batch_norm=False)
    batched = train_reference_models(template, x, y, mask, recipe, seed=0)
    steps = shadow_batches(mask, recipe, 0)
    for k, model in enumerate(fresh_copies(template, 4, seed=0)):
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        for step in steps:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[step[k]]), y[step[k]]).backward()
            optimizer.step()
        for (name, mine), theirs in zip(batched[k].named_parameters(), model.parameters(), strict=True):
            assert torch.allclose(mine, theirs, atol=1e-5), name
    assert reference_logits(batched, x).shape == (4, 40, 3)


def test_batch_norm_models_get_reference_models_one_at_a_time() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 3, (40,))
    target = _tiny(batch_norm=True).eval()
    pool = np.r_[np.zeros(8, bool), np.ones(32, bool)]
    result = lira_offline(target, x, y, pool, LiraConfig(4, 0.5, True, ShadowRecipe(epochs=2, batch_size=8), 0))
    assert result.scores.shape == (40,) and np.isfinite(result.scores).all()
    assert not result.in_mask[:, :8].any()  # no reference model ever trains on a record outside the pool
    assert (result.in_mask[:, 8:].sum(axis=0) == 2).all()
