"""Neural Cleanse's label schedule for many classes (K-Arm-style successive halving) keeps the verdict.

A row's optimization depends only on its seed and label, so every label the schedule keeps ends
with exactly the norm of the all-labels run; the stopped ones keep an upper bound; the verdict is
the same at a fraction of the work. The model is a linear classifier over 40 labels on 8x8 images
with one planted backdoor (a 2x2 corner patch drives label 7), small enough to run in seconds.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tasks.evaluate.backdoor import NeuralCleanseConfig, neural_cleanse

CLASSES, TARGET = 40, 7


@pytest.fixture(scope="module")
def planted() -> tuple[torch.nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, CLASSES))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(CLASSES, 64, generator=gen))
        model[1].bias.zero_()
        corner = torch.zeros(8, 8)
        corner[:2, :2] = 1.0
        model[1].weight[TARGET] += 40.0 * corner.flatten()  # the patch alone outvotes every label
    images = torch.rand(96, 1, 8, 8, generator=gen) * 0.3
    return model.eval(), images


def _config(**changes: object) -> NeuralCleanseConfig:
    base = NeuralCleanseConfig(epochs=24, batch_size=16, seeds=(0,), prune_every=4, null_labels=8, keep_labels=4)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_schedule_keeps_the_verdict_at_a_fraction_of_the_work(planted: tuple[torch.nn.Module, torch.Tensor]):
    model, images = planted
    full = neural_cleanse(model, images, CLASSES, _config(prune_above_classes=CLASSES))  # not above: all labels
    scheduled = neural_cleanse(model, images, CLASSES, _config(prune_above_classes=32))
    assert full.pruned_labels == [] and full.null_labels == []
    assert full.flagged and full.suspect_label == TARGET
    assert scheduled.flagged and scheduled.suspect_label == TARGET
    assert scheduled.suspect_labels[0] == TARGET
    assert len(scheduled.pruned_labels) >= CLASSES // 2 and TARGET not in scheduled.pruned_labels
    assert len(scheduled.null_labels) == 8 and not set(scheduled.null_labels) & set(scheduled.pruned_labels)
    assert scheduled.row_steps * 2 < full.row_steps
    for k in range(CLASSES):
        if k not in scheduled.pruned_labels:  # ran to the end: the very same optimization
            assert scheduled.norms[k] == pytest.approx(full.norms[k], rel=1e-5), k
        elif all(seed[k] for seed in scheduled.reached):  # stopped: its best so far, never below the end's
            assert scheduled.norms[k] >= full.norms[k] - 1e-4, k


def test_few_classes_never_prune(planted: tuple[torch.nn.Module, torch.Tensor]) -> None:
    model, images = planted
    result = neural_cleanse(model, images, CLASSES, _config(epochs=8, prune_above_classes=64))
    assert result.pruned_labels == [] and result.null_labels == []
    assert result.row_steps == sum(sum(e) for e in result.epochs_run) * (len(images) // 16)
