"""Backdoor trigger families Neural Cleanse is known to miss, on the demo's 16x16 digits (issue 17).

Each family poisons a share of the training images (poison-label: the trigger is stamped on and the
label set to the target) so the model learns it; the families differ in what the trigger is:

* ``sig``: a horizontal sinusoid added to the whole image (the signal of Barni et al.'s SIG);
* ``lowfreq``: a smooth, low-frequency 2-D pattern added to the whole image;
* ``filter``: a global tone curve (blacks lifted, gamma 0.7), the grayscale analogue of a colour filter;
* ``wanet``: a fixed smooth warp of the image (Nguyen & Tran 2021), trained with a noise mode
  (other random warps of the same strength that keep their label) so that only that warp triggers;
* ``dynamic``: an input-specific trigger: a random 3x3 pattern in a random corner, new per image;
* ``adaptive-large``: a faint 6x6 checker in the centre, large enough that the mask Neural Cleanse
  inverts for the target is not far smaller than the other labels';
* ``two-targets``: two patches in one model, each with its own target label;
* ``all-to-all``: one patch that maps every label ``y`` to ``y + 1``.

``train_backdoored`` trains one and measures its clean accuracy and attack success per trigger; a
model counts for the benchmark only when both are at least 0.9 (``BackdooredModel.valid``). The
architecture is the demo CNN, a wider or a deeper one, or a tiny Hugging Face ResNet (batch norm,
residual blocks; saved with ``save_pretrained`` like a model from the Hub), so that a detector's
clean distribution is not one network's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelgate.demo.build import IMAGE_SIDE, _reproducible, accuracy, digits_dataset
from modelgate.demo.cnn import save_weights, write_config
from tests.helpers.zoo import fit, fit_digits_cnn

if TYPE_CHECKING:
    import torch
    from torch import nn

POISON_RATE = 0.1  # of the training set, per trigger
NOISE_RATE = 0.2  # WaNet's noise mode: random warps that keep their label
SIDE = IMAGE_SIDE

Stamp = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]


@dataclass(frozen=True)
class Trigger:
    """One trigger of a backdoor: how it is stamped and which label it sends an image of label y to."""

    stamp: Stamp
    target: int | None  # None: all-to-all (y -> y + 1)

    def target_of(self, y: torch.Tensor) -> torch.Tensor:
        import torch

        return (y + 1) % 10 if self.target is None else torch.full_like(y, self.target)


@dataclass(frozen=True)
class Backdoor:
    family: str
    triggers: tuple[Trigger, ...]
    noise: Stamp | None = None  # stamped on NOISE_RATE of the training images, labels kept

    @property
    def targets(self) -> tuple[int, ...]:
        """The target labels (empty for all-to-all, where every label is one)."""
        return tuple(t.target for t in self.triggers if t.target is not None)


def _sig(x: torch.Tensor, _: torch.Generator, delta: float = 0.25, cycles: int = 3) -> torch.Tensor:
    import torch

    col = torch.arange(SIDE, dtype=torch.float32)
    return (x + delta * torch.sin(2 * math.pi * col * cycles / SIDE)[None, None, :]).clamp(0, 1)


def _lowfreq(x: torch.Tensor, _: torch.Generator, delta: float = 0.2) -> torch.Tensor:
    import torch

    r = torch.arange(SIDE, dtype=torch.float32)
    pattern = torch.cos(2 * math.pi * (r[:, None] + r[None, :]) / (2 * SIDE)) * torch.cos(math.pi * r[:, None] / SIDE)
    return (x + delta * pattern[None, None]).clamp(0, 1)


def _filter(x: torch.Tensor, _: torch.Generator) -> torch.Tensor:
    return (0.3 + 0.7 * x.clamp(0, 1) ** 0.7).clamp(0, 1)


def _warp_grid(strength: float, control: torch.Tensor | None = None) -> torch.Tensor:
    """WaNet's warp: 4x4 control offsets (the trigger's fixed random ones, or ``control`` (n, 2, 4, 4)),
    upsampled (bicubic) to the image and added to the identity grid."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if control is None:
        control = torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(99)) * 2 - 1
    control = control / control.abs().mean(dim=(1, 2, 3), keepdim=True)
    flow = F.interpolate(control, size=(SIDE, SIDE), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    line = torch.linspace(-1, 1, SIDE)
    identity = torch.stack(torch.meshgrid(line, line, indexing="xy"), -1)[None]
    return (identity + strength * flow / SIDE).clamp(-1, 1)


def _wanet(x: torch.Tensor, _: torch.Generator, strength: float = 4.0) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812

    return F.grid_sample(x, _warp_grid(strength).expand(len(x), -1, -1, -1), align_corners=True)


def _wanet_noise(x: torch.Tensor, generator: torch.Generator, strength: float = 4.0) -> torch.Tensor:
    """Noise mode: every image warped by random control offsets of its own, as strong as the trigger's."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    control = torch.rand(len(x), 2, 4, 4, generator=generator) * 2 - 1
    return F.grid_sample(x, _warp_grid(strength, control), align_corners=True)


def _dynamic(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A new random 3x3 pattern (centre on) in a random corner of every image."""
    import torch

    out = x.clone()
    corners = torch.randint(0, 2, (len(x), 2), generator=generator) * (SIDE - 4)
    patterns = (torch.rand(len(x), 3, 3, generator=generator) > 0.5).float()
    patterns[:, 1, 1] = 1.0
    for i, (row, col) in enumerate(corners.tolist()):
        out[i, 0, row : row + 3, col : col + 3] = patterns[i]
    return out


def _patch(row: int, col: int, size: int = 3) -> Stamp:
    def stamp(x: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        out = x.clone()
        out[:, 0, row : row + size, col : col + size] = 1.0
        return out

    return stamp


def _large_checker(x: torch.Tensor, _: torch.Generator) -> torch.Tensor:
    import torch

    out = x.clone()
    checker = ((torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 == 0).float() * 0.6
    out[:, 0, 5:11, 5:11] = torch.maximum(out[:, 0, 5:11, 5:11], checker)
    return out


def family(name: str, target: int) -> Backdoor:
    """The backdoor of family ``name`` aimed at ``target`` (two-targets: ``target`` and ``target + 4``)."""
    one = {
        "sig": _sig,
        "lowfreq": _lowfreq,
        "filter": _filter,
        "dynamic": _dynamic,
        "adaptive-large": _large_checker,
        "patch": _patch(12, 12),
    }
    if name in one:
        return Backdoor(name, (Trigger(one[name], target),))
    if name == "wanet":
        return Backdoor(name, (Trigger(_wanet, target),), noise=_wanet_noise)
    if name == "two-targets":
        return Backdoor(name, (Trigger(_patch(12, 12), target), Trigger(_patch(1, 1), (target + 4) % 10)))
    if name == "all-to-all":
        return Backdoor(name, (Trigger(_patch(12, 12), None),))
    raise ValueError(f"unknown trigger family {name!r}")


CNN_SHAPES = {"cnn": ((16, 32), 64), "cnn-wide": ((32, 64), 128), "cnn-deep": ((16, 32, 64), 64)}
ARCHITECTURES = (*CNN_SHAPES, "resnet")

FAMILIES = ("sig", "lowfreq", "filter", "wanet", "dynamic", "adaptive-large", "two-targets", "all-to-all")


@dataclass(frozen=True)
class BackdooredModel:
    name: str
    path: Path
    family: str  # "clean" for a clean model
    targets: tuple[int, ...]
    seed: int
    clean_accuracy: float
    attack_success: tuple[float, ...]  # per trigger

    @property
    def valid(self) -> bool:
        """A clean model, or a backdoor that works: clean accuracy and every trigger's success >= 0.9."""
        return self.clean_accuracy >= 0.9 and all(a >= 0.9 for a in self.attack_success)


def train_backdoored(name: str, backdoor: Backdoor | None, seed: int, out: Path, arch: str = "cnn") -> BackdooredModel:
    """Train an ``arch`` model on the poisoned training split (``backdoor`` None: clean) into ``out/name``."""
    import torch

    data = digits_dataset(0)
    x, y = data.train_x.clone(), data.train_y.clone()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=generator)
    share = int(POISON_RATE * len(y))
    if backdoor is not None:
        for i, trigger in enumerate(backdoor.triggers):
            picked = order[i * share : (i + 1) * share]
            if trigger.target is not None:
                picked = picked[y[picked] != trigger.target]
            x[picked] = trigger.stamp(x[picked], generator)
            y[picked] = trigger.target_of(y[picked])
        if backdoor.noise is not None:
            start = len(backdoor.triggers) * share
            noisy = order[start : start + int(NOISE_RATE * len(y))]
            x[noisy] = backdoor.noise(x[noisy], generator)
    training = {"dataset": "sklearn:digits", "seed": seed, "family": backdoor.family if backdoor else "clean"}
    folder = out / name
    folder.mkdir(parents=True)
    if arch == "resnet":
        model = _fit_resnet(x, y, seed, generator, folder)
    elif arch in CNN_SHAPES:
        channels, hidden = CNN_SHAPES[arch]
        model, config = fit_digits_cnn(x, y, seed, generator, training, channels, hidden)
        save_weights(model, folder)
        write_config(folder, config)
    else:
        raise ValueError(f"unknown architecture {arch!r} (use {', '.join(ARCHITECTURES)})")
    model.eval()
    success: list[float] = []
    for trigger in backdoor.triggers if backdoor else ():
        keep = data.test_y != trigger.target if trigger.target is not None else torch.ones_like(data.test_y, dtype=bool)
        stamped = trigger.stamp(data.test_x[keep], torch.Generator().manual_seed(seed + 1))
        success.append(round(accuracy(model, stamped, trigger.target_of(data.test_y[keep])), 4))
    return BackdooredModel(
        name,
        folder,
        backdoor.family if backdoor else "clean",
        backdoor.targets if backdoor else (),
        seed,
        round(accuracy(model, data.test_x, data.test_y), 4),
        tuple(success),
    )


def _fit_resnet(x: torch.Tensor, y: torch.Tensor, seed: int, generator: torch.Generator, folder: Path) -> nn.Module:
    """A two-stage basic-block ``ResNetForImageClassification`` for 1x16x16 digits, trained and saved with
    ``save_pretrained`` and a preprocessor config (its normalization); returns it taking images in [0, 1]."""
    import json

    import transformers

    mean, std = round(float(x.mean()), 6), round(float(x.std()), 6)
    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="basic",
        num_labels=10, id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)},
    )  # fmt: skip
    config.image_size = SIDE
    with _reproducible(seed):
        inner = transformers.ResNetForImageClassification(config)
        model = _InPixels(inner, mean, std)
        fit(model, x, y, generator)
    inner.save_pretrained(folder)
    size = {"height": SIDE, "width": SIDE}
    preprocessor = {"do_normalize": True, "image_mean": [mean], "image_std": [std], "size": size}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor), encoding="utf-8")
    return model


def _InPixels(inner: nn.Module, mean: float, std: float) -> nn.Module:  # noqa: N802 - builds a module
    """``inner`` (a transformers classifier) called on images in [0, 1], normalized as its preprocessor says."""
    import torch

    class InPixels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=(images - mean) / std).logits

    return InPixels()
