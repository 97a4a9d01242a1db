"""Classifiers with many labels for the label schedule of Neural Cleanse (issue 17): timing and verdicts.

``pair_digits`` makes a 100-class task from the bundled digits: two 16x16 digits on a 32x32 canvas
(top-left and bottom-right), the label ``10 * a + b``. ``train_pairs`` trains the demo CNN on it,
clean or with a BadNets patch (bottom-left corner, empty in every clean image) sent to one label, so
the schedule is compared on a real backdoor among 100 labels. ``random_head`` is a random-weight
CNN with any number of labels (1,000 for an ImageNet-sized head): timing only, as the issue allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelgate.demo.build import _reproducible, accuracy, digits_dataset
from modelgate.demo.cnn import CnnConfig, build_model
from tests.helpers.zoo import fit

if TYPE_CHECKING:
    import torch
    from torch import nn

SIDE = 32
PATCH = 4


@dataclass(frozen=True)
class PairModel:
    model: nn.Module
    config: CnnConfig
    target: int | None
    clean_accuracy: float
    attack_success: float | None


def pair_digits(count: int, seed: int, test: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` two-digit images ``(count, 1, 32, 32)`` and their labels in 0..99, from the digits'
    training split (or its test split)."""
    import torch

    data = digits_dataset(0)
    x, y = (data.test_x, data.test_y) if test else (data.train_x, data.train_y)
    gen = torch.Generator().manual_seed(seed)
    first, second = torch.randint(0, len(y), (2, count), generator=gen)
    canvas = torch.zeros(count, 1, SIDE, SIDE)
    canvas[:, :, :16, :16] = x[first]
    canvas[:, :, 16:, 16:] = x[second]
    return canvas, 10 * y[first] + y[second]


def stamp(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[:, :, SIDE - PATCH - 1 : SIDE - 1, 1 : PATCH + 1] = 1.0
    return out


def train_pairs(seed: int, target: int | None, samples: int = 12000) -> PairModel:
    """The demo CNN on ``samples`` two-digit images; with ``target``, 10% of them carry the patch and that label."""
    import torch

    x, y = pair_digits(samples, seed)
    if target is not None:
        poisoned = torch.randperm(samples, generator=torch.Generator().manual_seed(seed + 1))[: samples // 10]
        poisoned = poisoned[y[poisoned] != target]
        x[poisoned], y[poisoned] = stamp(x[poisoned]), target
    config = CnnConfig(
        num_classes=100, input_shape=(1, SIDE, SIDE), channels=(16, 32), hidden_units=128,
        label_names=tuple(f"{k:02d}" for k in range(100)), mean=(round(float(x.mean()), 6),),
        std=(round(float(x.std()), 6),), training={"dataset": "pair-digits", "seed": seed},
    )  # fmt: skip
    with _reproducible(seed):
        model = build_model(config)
        fit(model, x, y, torch.Generator().manual_seed(seed))
    test_x, test_y = pair_digits(2000, seed + 2, test=True)
    success = None
    if target is not None:
        keep = test_y != target
        success = round(accuracy(model, stamp(test_x[keep]), torch.full_like(test_y[keep], target)), 4)
    return PairModel(model, config, target, round(accuracy(model, test_x, test_y), 4), success)


def random_head(classes: int, seed: int = 0, side: int = 16) -> nn.Module:
    """A random-weight demo-sized CNN with ``classes`` outputs (timing only)."""
    config = CnnConfig(
        num_classes=classes, input_shape=(1, side, side), channels=(8, 16), hidden_units=64,
        label_names=tuple(str(k) for k in range(classes)), mean=(0.5,), std=(0.25,),
    )  # fmt: skip
    with _reproducible(seed):
        return build_model(config).eval()
