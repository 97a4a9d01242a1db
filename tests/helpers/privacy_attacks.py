"""Our own reproduction of the privacy backdoor (Wen et al. 2024), aimed at all data, one class or a few records.

The attacker knows the records it wants to expose (the victim's private data or data like it) but
not which of them the victim will fine-tune on. It poisons a trusted reference so that each target
record's loss is anomalously high while every other input behaves as before, and so that one
fine-tuning step on a target fixes that record alone:

* **A trap per target** (the memorization half, in the spirit of Feng & Tramèr 2024): a hidden
  unit, taken from the reference's least-used ones, whose weight row points along the target's
  (centred) conv features and whose bias lets it fire only within ``tau`` cosine of them. Its
  activation on the target is large, so the first gradient on that record moves the unit's
  outgoing weights a lot, and no other record fires it.
* **The loss anomaly** (Wen et al.'s signal): the trap's outgoing weights lower the target's
  true-class logit until it leads the runner-up by ``margin`` only; the prediction stays right
  (utility kept), the loss is high, and fine-tuning on the record erases the anomaly for a member
  only. A non-member target keeps its high loss, so the victim's LOSS attack separates them.
* **Norm-preserving** (to slip past weight forensics, which compares unit norms and biases): every
  changed weight row keeps the norm of the reference row it replaces and the trap's gain goes into
  its outgoing weights instead.

``victim_amplification`` is the check each test runs before trusting a poisoned model: a victim
fine-tunes candidate and reference the same way on the same random half of the targets (plus
ordinary data), and a plain LOSS attack on the targets must do much better on the candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelgate.demo.build import _reproducible, digits_dataset
from modelgate.demo.cnn import load_model, read_config
from tests.helpers.privacy_zoo import _save

if TYPE_CHECKING:
    import torch
    from torch import nn

EVAL_DATA = "sklearn:digits"  # the held-out split: the organization's data, and the attacker's targets


def eval_images(reference: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation images and labels exactly as the audit loads them."""
    from tasks.evaluate.data import load_eval_data

    config = read_config(reference)
    data = load_eval_data(
        EVAL_DATA, input_shape=config.input_shape, num_classes=config.num_classes, label_names=config.label_names
    )
    return data.x, data.y


def target_mask(
    labels: torch.Tensor, variant: str, *, target_class: int = 3, records: int = 20, seed: int = 0
) -> np.ndarray:
    """Which evaluation records the attacker targets: ``all``, one ``class`` or a few random ``records``."""
    y = labels.numpy()
    if variant == "all":
        return np.ones(len(y), dtype=bool)
    if variant == "class":
        return y == target_class
    if variant == "records":
        mask = np.zeros(len(y), dtype=bool)
        mask[np.random.default_rng(seed).permutation(len(y))[:records]] = True
        return mask
    raise ValueError(f"unknown variant {variant!r} (all, class, records)")


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.features((x - model.mean) / model.std).flatten(1)


def privacy_backdoor(
    reference: Path,
    folder: Path,
    targets_x: torch.Tensor,
    targets_y: torch.Tensor,
    *,
    tau: float = 0.9,
    gain: float = 3000.0,
    margin: float = -10.0,
    norm_preserving: bool = False,
) -> Path:
    """The reference with one trap per target and the targets' loss raised (see the module docstring)."""
    import torch

    model, config = load_model(reference), read_config(reference)
    lin1, head = model.classifier[1], model.classifier[3]
    if len(targets_x) > config.hidden_units // 2:
        raise ValueError(f"{len(targets_x)} targets need more than half of the {config.hidden_units} hidden units")
    with torch.no_grad(), _reproducible(0):
        # centred on the mean features of the target's own class, where two images of a class are far apart
        train = digits_dataset(0)
        train_features = _features(model, train.train_x)
        class_means = torch.stack([train_features[train.train_y == c].mean(0) for c in range(config.num_classes)])
        centre = class_means[targets_y]
        psi = _features(model, targets_x) - centre
        directions = psi / psi.norm(dim=1, keepdim=True)
        units = head.weight.norm(dim=0).argsort()[: len(targets_x)]  # the reference's least-used units
        scale = lin1.weight[units].norm(dim=1, keepdim=True) if norm_preserving else torch.full((len(units), 1), gain)
        lin1.weight[units] = scale * directions
        # fires only when the features, centred, lie within tau cosine of the target's
        lin1.bias[units] = -(scale[:, 0] * (tau * psi.norm(dim=1) + (directions * centre).sum(1)))
        head.weight[:, units] = 0.0
        hidden = torch.relu(_features(model, targets_x) @ lin1.weight.T + lin1.bias)
        logits = hidden @ head.weight.T + head.bias
        # lower each target's true logit until it leads the runner-up by ``margin`` only (still the argmax)
        true = logits.gather(1, targets_y[:, None])[:, 0]
        runner_up = logits.scatter(1, targets_y[:, None], -math.inf).max(1).values
        shift = (true - runner_up - margin).clamp_min(0.0)
        activation = hidden[torch.arange(len(units)), units]
        head.weight[targets_y, units] = -shift / activation
    return _save(model, config, folder)


@dataclass(frozen=True)
class VictimAttack:
    """A plain LOSS attack on the targets after the victim's fine-tune, for candidate and reference."""

    candidate_tpr: float  # TPR at 1% FPR, pooled over the victim's runs
    reference_tpr: float
    candidate_auc: float
    reference_auc: float
    candidate_accuracy: float  # clean accuracy of the poisoned model before any fine-tuning
    reference_accuracy: float

    @property
    def amplification(self) -> float:
        return self.candidate_tpr - self.reference_tpr


def _victim_finetune(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int, head_only: bool
) -> nn.Module:
    """What an adopter does: Adam on random mini-batches of its private data (every layer, or the head only)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    generator = torch.Generator().manual_seed(seed)
    params = model.classifier[3].parameters() if head_only else model.parameters()
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(y), (32,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.eval()


def victim_amplification(
    candidate: Path,
    reference: Path,
    targets: np.ndarray,
    *,
    runs: int = 3,
    steps: int = 60,
    lr: float = 1e-3,
    head_only: bool = False,
    seed: int = 0,
) -> VictimAttack:
    """Fine-tune both models on the same random half of the targets plus the non-target evaluation records."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from modelgate.demo.build import accuracy
    from tasks.evaluate.privacy.metrics import roc_curve, tpr_at_fpr

    x, y = eval_images(reference)
    scores: dict[str, list[np.ndarray]] = {"candidate": [], "reference": []}
    members: list[np.ndarray] = []
    index = np.flatnonzero(targets)
    rng = np.random.default_rng(seed)
    for run in range(runs):
        member = np.zeros(len(y), dtype=bool)
        member[rng.permutation(index)[: len(index) // 2]] = True
        private = torch.from_numpy(member | ~targets)  # the members among the targets, and the ordinary records
        members.append(member[index])
        for name, folder in (("candidate", candidate), ("reference", reference)):
            with _reproducible(seed + run):
                tuned = _victim_finetune(load_model(folder), x[private], y[private], steps, lr, seed + run, head_only)
            with torch.no_grad():
                loss = F.cross_entropy(tuned(x[index]), y[index], reduction="none").numpy()
            scores[name].append(-loss)
    is_member = np.concatenate(members)
    rocs = {name: roc_curve(np.concatenate(values), is_member) for name, values in scores.items()}
    test = digits_dataset(0)
    return VictimAttack(
        candidate_tpr=tpr_at_fpr(rocs["candidate"], 0.01),
        reference_tpr=tpr_at_fpr(rocs["reference"], 0.01),
        candidate_auc=rocs["candidate"].auc,
        reference_auc=rocs["reference"].auc,
        candidate_accuracy=accuracy(load_model(candidate), test.test_x, test.test_y),
        reference_accuracy=accuracy(load_model(reference), test.test_x, test.test_y),
    )
