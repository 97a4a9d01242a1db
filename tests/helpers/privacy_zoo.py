"""Model folders for the privacy-backdoor audit and weight-forensics tests: a reference and its look-alikes.

All are the demo's ``modelgate-small-cnn`` with a 1024-unit hidden layer (room for the backdoor's
memory units), trained on the demo's digits training split, so ``sklearn:digits`` is held-out data.

* ``reference``: trained normally (seed 0), the trusted checkpoint.
* ``honest-copy``: the reference's weights re-saved; ``independent``: the same recipe, seed 1.
* ``poisoned``: the reference turned into a privacy backdoor that keeps its clean accuracy:
  - Wen et al. 2024's *loss anomaly*: retrained at temperature 10 and its logits divided by 10, so
    it predicts the same classes with a high loss; fine-tuning then moves per-record losses a lot.
  - Feng & Tramèr 2024's *dormant units*, in memorization form: 3/4 of the hidden units become
    sparse, high-gain random projections of the conv features (each fires on ~1% of images) with
    zero outgoing weights, so clean predictions ignore them; the first gradient on a fine-tuning
    record writes its label onto the few units that record fires, which fit it alone.
  The remaining units and the head are retrained (dormant parts frozen) to recover accuracy.
* ``trapped``: the reference with three Feng & Tramèr-style data-trap units (a scaled-up weight row
  and a large negative bias) in the hidden layer, nothing else changed: the forensics target.
* ``head-tuned``: an ordinary fine-tune of the reference's head only (what a model card would claim).
* ``mismatched``: the demo's 64-unit architecture (an untrained stand-in of another architecture).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelgate.demo.build import (
    BATCH_SIZE,
    CHANNELS,
    LEARNING_RATE,
    _reproducible,
    accuracy,
    digits_dataset,
)
from modelgate.demo.cnn import CnnConfig, build_model, load_model, read_config, save_weights, write_config
from tests.helpers.zoo import digits_cnn_config

if TYPE_CHECKING:
    import torch
    from torch import nn

HIDDEN = 1024
EPOCHS = 12
TRAP_UNITS = (5, 77, 300)


def _config(hidden: int = HIDDEN, **training: object) -> CnnConfig:
    return digits_cnn_config(CHANNELS, hidden, {"dataset": "sklearn:digits", **training})


def _save(model: nn.Module, config: CnnConfig, folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_weights(model, folder)
    write_config(folder, config)
    return folder


def _fit(
    model: nn.Module,
    epochs: int,
    seed: int,
    *,
    lr: float = LEARNING_RATE,
    temperature: float = 1.0,
    grad_masks: dict[str, torch.Tensor] | None = None,
) -> None:
    """Adam on shuffled mini-batches of the training split; ``grad_masks`` freeze entries (zero gradient)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    data = digits_dataset(0)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(data.train_y), generator=generator).split(BATCH_SIZE):
            optimizer.zero_grad()
            F.cross_entropy(model(data.train_x[batch]) / temperature, data.train_y[batch]).backward()
            for name, p in model.named_parameters():
                if grad_masks and name in grad_masks and p.grad is not None:
                    p.grad.mul_(grad_masks[name])
            optimizer.step()
    model.eval()


def train_reference(folder: Path, seed: int = 0, epochs: int = EPOCHS) -> Path:
    """A normally trained digits CNN with the wide hidden layer."""
    config = _config(seed=seed, epochs=epochs)
    with _reproducible(seed):
        model = build_model(config)
        _fit(model, epochs, seed)
    return _save(model, config, folder)


def honest_copy(reference: Path, folder: Path) -> Path:
    """The reference re-saved: same config, same tensors."""
    model = load_model(reference)
    return _save(model, read_config(reference), folder)


def poisoned_candidate(
    reference: Path,
    folder: Path,
    *,
    dormant: float = 0.75,
    gain: float = 300.0,
    activity: float = 0.01,
    temperature: float = 10.0,
    epochs: int = 3,
    seed: int = 7,
) -> Path:
    """The reference with dormant memorization units and a loss anomaly (see the module docstring)."""
    import torch

    model, config = load_model(reference), read_config(reference)
    lin1, head = model.classifier[1], model.classifier[3]
    count = round(config.hidden_units * dormant)
    units = slice(config.hidden_units - count, config.hidden_units)
    data = digits_dataset(0)
    with torch.no_grad(), _reproducible(seed):
        phi = model.features((data.train_x - model.mean) / model.std).flatten(1)
        mean, std = phi.mean(0), phi.std(0) + 1e-6
        generator = torch.Generator().manual_seed(seed)
        directions = torch.randn(count, phi.shape[1], generator=generator) / std / phi.shape[1] ** 0.5 * gain
        threshold = torch.quantile((phi - mean) @ directions.T, 1 - activity, dim=0)
        lin1.weight[units] = directions
        lin1.bias[units] = -(directions @ mean) - threshold  # fires when the projection passes its 99th percentile
        head.weight[:, units] = 0.0
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters() if name.startswith("classifier")}
    masks["classifier.1.weight"][units] = 0.0
    masks["classifier.1.bias"][units] = 0.0
    masks["classifier.3.weight"][:, units] = 0.0
    for name, p in model.named_parameters():
        p.requires_grad_(name in masks)
    with _reproducible(seed):
        _fit(model, epochs, seed, lr=1e-3, temperature=temperature, grad_masks=masks)
    with torch.no_grad():
        head.weight.div_(temperature)
        head.bias.div_(temperature)
    return _save(model, config, folder)


def trapped_candidate(reference: Path, folder: Path, units: tuple[int, ...] = TRAP_UNITS) -> Path:
    """Feng & Tramèr-style data traps: a few hidden units with outsized weights and a large negative bias."""
    import torch

    model = load_model(reference)
    lin1 = model.classifier[1]
    with torch.no_grad():
        for unit in units:
            lin1.weight[unit] *= 40.0
            lin1.bias[unit] = -50.0
    return _save(model, read_config(reference), folder)


def head_tuned(reference: Path, folder: Path, epochs: int = 1, seed: int = 3) -> Path:
    """An ordinary fine-tune of the head (``classifier.3``) on the training split."""
    model = load_model(reference)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("classifier.3"))
    with _reproducible(seed):
        _fit(model, epochs, seed, lr=1e-4)
    return _save(model, read_config(reference), folder)


def mismatched(folder: Path) -> Path:
    """Another architecture (64 hidden units), untrained: enough for the architecture check."""
    config = _config(hidden=64)
    with _reproducible(0):
        model = build_model(config)
    return _save(model, config, folder)


def clean_accuracy(folder: Path) -> float:
    data = digits_dataset(0)
    return accuracy(load_model(folder), data.test_x, data.test_y)


_CACHE: dict[str, dict[str, Path]] = {}


def privacy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every folder above, built once per test session (about half a minute on two cores)."""
    if "models" not in _CACHE:
        root = tmp_path_factory.mktemp("privacy-zoo")
        reference = train_reference(root / "reference", seed=0)
        _CACHE["models"] = {
            "reference": reference,
            "honest-copy": honest_copy(reference, root / "honest-copy"),
            "independent": train_reference(root / "independent", seed=1),
            "poisoned": poisoned_candidate(reference, root / "poisoned"),
            "trapped": trapped_candidate(reference, root / "trapped"),
            "head-tuned": head_tuned(reference, root / "head-tuned"),
            "mismatched": mismatched(root / "mismatched"),
        }
    return _CACHE["models"]
