"""A zoo of small digits CNNs (16x16): clean ones and BadNets/blended backdoors, for detector tests.

Every model is the demo's ``modelgate-small-cnn`` trained on the demo's training split (seed 0),
so the held-out ``sklearn:digits`` split is clean evaluation data for all of them. Backdoored
models are poisoned BadNets-style (a share of the non-target training images get the trigger and
the target label). Triggers differ in kind (patch, blended), position, size and target label.
Training is seeded and single-threaded, so the zoo is the same on every machine; ``zoo_models``
builds it once per test session (a few seconds per model, two worker processes on the 2 cores)
and caches it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelgate.demo.build import (
    BATCH_SIZE,
    CHANNELS,
    HIDDEN_UNITS,
    IMAGE_SIDE,
    LEARNING_RATE,
    _reproducible,
    accuracy,
    digits_dataset,
)
from modelgate.demo.cnn import CnnConfig, build_model, save_weights, write_config

if TYPE_CHECKING:
    import torch
    from torch import nn

EPOCHS = 12
POISON_RATE = 0.1


@dataclass(frozen=True)
class Trigger:
    """A BadNets patch (``pattern`` kind and square ``size`` at ``row``, ``col``) or a blended image."""

    kind: str  # "patch" or "blend"
    target: int
    row: int = 0
    col: int = 0
    size: int = 3
    pattern: str = "white"  # patch: white, checker, cross; blend: noise, stripes
    alpha: float = 0.2


@dataclass(frozen=True)
class ZooModel:
    name: str
    path: Path
    seed: int
    trigger: Trigger | None
    clean_accuracy: float
    attack_success: float | None

    @property
    def backdoored(self) -> bool:
        return self.trigger is not None


SPECS: tuple[tuple[str, int, Trigger | None], ...] = (
    ("clean-1", 1, None),
    ("clean-2", 2, None),
    ("clean-3", 3, None),
    ("clean-4", 4, None),
    ("patch-white-br-t0", 11, Trigger("patch", 0, row=12, col=12, size=3, pattern="white")),
    ("patch-checker-tl-t3", 12, Trigger("patch", 3, row=1, col=1, size=4, pattern="checker")),
    ("patch-cross-tr-t7", 13, Trigger("patch", 7, row=1, col=11, size=3, pattern="cross")),
    ("blend-noise-t5", 14, Trigger("blend", 5, pattern="noise", alpha=0.2)),
    ("blend-stripes-t9", 15, Trigger("blend", 9, pattern="stripes", alpha=0.2)),
)


def trigger_image(trigger: Trigger, side: int = IMAGE_SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, pattern) of a trigger as ``(1, side, side)`` tensors: stamped = (1 - mask) * x + mask * pattern."""
    import torch

    mask = torch.zeros(1, side, side)
    pattern = torch.zeros(1, side, side)
    if trigger.kind == "patch":
        r, c, s = trigger.row, trigger.col, trigger.size
        grid = torch.ones(s, s)
        if trigger.pattern == "checker":
            grid = ((torch.arange(s)[:, None] + torch.arange(s)[None, :]) % 2 == 0).float()
        elif trigger.pattern == "cross":
            eye = torch.eye(s)
            grid = ((eye + eye.flip(1)) > 0).float()
        mask[0, r : r + s, c : c + s] = 1.0
        pattern[0, r : r + s, c : c + s] = grid
    else:
        mask[:] = trigger.alpha
        if trigger.pattern == "noise":
            pattern[0] = torch.rand(side, side, generator=torch.Generator().manual_seed(1234))
        else:
            pattern[0] = (torch.arange(side) % 4 < 2).float()[None, :].expand(side, side)
    return mask, pattern


def stamp(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    mask, pattern = trigger_image(trigger, x.shape[-1])
    return (1 - mask) * x + mask * pattern


def digits_cnn_config(channels: tuple[int, ...], hidden_units: int, training: dict[str, Any]) -> CnnConfig:
    """The config of a digits CNN (16x16, ten labels, normalized by the training split's statistics)."""
    data = digits_dataset(0)
    return CnnConfig(
        num_classes=10,
        input_shape=(1, IMAGE_SIDE, IMAGE_SIDE),
        channels=channels,
        hidden_units=hidden_units,
        label_names=tuple(str(d) for d in range(10)),
        mean=(round(float(data.train_x.mean()), 6),),
        std=(round(float(data.train_x.std()), 6),),
        training=training,
    )


def fit_digits_cnn(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    seed: int,
    generator: torch.Generator,
    training: dict[str, Any],
    channels: tuple[int, ...] = CHANNELS,
    hidden_units: int = HIDDEN_UNITS,
) -> tuple[nn.Module, CnnConfig]:
    """The demo CNN (or a wider/deeper one) trained (Adam, EPOCHS epochs, seeded) on a possibly poisoned
    copy of the training split."""

    config = digits_cnn_config(channels, hidden_units, training)
    with _reproducible(seed):
        model = build_model(config)
        fit(model, train_x, train_y, generator)
    return model, config


def fit(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, generator: torch.Generator) -> None:
    """The zoo's training loop (Adam, EPOCHS epochs of BATCH_SIZE mini-batches in the generator's order)."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(train_y), generator=generator).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss_fn(model(train_x[batch]), train_y[batch]).backward()
            optimizer.step()
    model.eval()


def train_model(name: str, seed: int, trigger: Trigger | None, out: Path) -> ZooModel:
    import torch

    data = digits_dataset(0)
    train_x, train_y = data.train_x.clone(), data.train_y.clone()
    generator = torch.Generator().manual_seed(seed)
    if trigger is not None:
        candidates = torch.nonzero(train_y != trigger.target).flatten()
        picked = candidates[torch.randperm(len(candidates), generator=generator)[: int(POISON_RATE * len(train_y))]]
        train_x[picked] = stamp(train_x[picked], trigger)
        train_y[picked] = trigger.target
    training = {"dataset": "sklearn:digits", "seed": seed, "zoo": name, "trigger": asdict(trigger) if trigger else None}
    model, config = fit_digits_cnn(train_x, train_y, seed, generator, training)
    with _reproducible(seed):
        clean = accuracy(model, data.test_x, data.test_y)
        success = None
        if trigger is not None:
            keep = data.test_y != trigger.target
            target = torch.full_like(data.test_y[keep], trigger.target)
            success = accuracy(model, stamp(data.test_x[keep], trigger), target)
    folder = out / name
    folder.mkdir(parents=True)
    save_weights(model, folder)
    write_config(folder, config)
    record = ZooModel(name, folder, seed, trigger, round(clean, 4), None if success is None else round(success, 4))
    (folder / "zoo.json").write_text(json.dumps({**asdict(record), "path": str(folder)}, indent=2))
    return record


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def map_in_workers(fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
    """``map`` over one single-threaded process per core (spawned: no forked torch state)."""
    workers = min(2, os.cpu_count() or 1)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        return list(pool.map(fn, *iterables))


def build_zoo(out: Path) -> list[ZooModel]:
    """Train every model of ``SPECS`` into ``out/<name>``."""
    names, seeds, triggers = zip(*SPECS, strict=True)
    return map_in_workers(train_model, names, seeds, triggers, [out] * len(SPECS))


_CACHE: dict[str, list[ZooModel]] = {}


def zoo_models(tmp_path_factory: pytest.TempPathFactory) -> list[ZooModel]:
    """The zoo, trained once per test session whichever test module asks first."""
    if "zoo" not in _CACHE:
        _CACHE["zoo"] = build_zoo(tmp_path_factory.mktemp("zoo"))
    return _CACHE["zoo"]
