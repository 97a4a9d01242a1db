"""The example models' small CNN: its ``config.json`` schema, the network, and a safe loader.

A model folder holds ``config.json`` and ``model.safetensors``. The config is untrusted input,
so it is validated with tight bounds before any tensor is allocated; weights are only ever
read from safetensors. torch is imported inside functions so ``modelgate.demo`` imports
without it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

ARCHITECTURE = "modelgate-small-cnn"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 64 * 1024

MAX_CHANNELS = 256
MAX_CONV_LAYERS = 4
MAX_CLASSES = 1000
MAX_SIDE = 256
MAX_HIDDEN = 4096


@dataclass(frozen=True)
class CnnConfig:
    """What ``config.json`` says about a small CNN; ``from_dict`` validates, ``to_dict`` writes.

    Inputs are images with values in ``input_range``; the network normalizes them itself with
    ``mean``/``std`` (one value per channel), so attacks and trigger searches work in image space.
    """

    num_classes: int
    input_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    hidden_units: int
    label_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_range: tuple[float, float] = (0.0, 1.0)
    model_task: str = "image-classification"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def feature_side(self) -> int:
        """Side of the feature map after the conv blocks (each halves it)."""
        return self.input_shape[1] // 2 ** len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` document."""
        return {
            "architecture": ARCHITECTURE,
            "model_task": self.model_task,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "channels": list(self.channels),
            "hidden_units": self.hidden_units,
            "label_names": list(self.label_names),
            "normalization": {
                "mean": list(self.mean),
                "std": list(self.std),
                "input_range": list(self.input_range),
                "applied": "in-model",
            },
            "training": dict(self.training),
        }

    @classmethod
    def from_dict(cls, data: Any) -> CnnConfig:
        """Parse a ``config.json`` document; ValueError names the first bad field."""
        if not isinstance(data, dict):
            raise ValueError("config: expected a JSON object")
        if data.get("architecture") != ARCHITECTURE:
            raise ValueError(f"config.architecture: expected {ARCHITECTURE!r}, got {data.get('architecture')!r}")
        norm = data.get("normalization")
        if not isinstance(norm, dict):
            raise ValueError("config.normalization: expected an object")
        training = data.get("training", {})
        if not isinstance(training, dict):
            raise ValueError("config.training: expected an object")
        return cls(
            num_classes=_int(data, "num_classes"),
            input_shape=_int_tuple(data, "input_shape", 3),  # type: ignore[arg-type]
            channels=_int_tuple(data, "channels"),
            hidden_units=_int(data, "hidden_units"),
            label_names=tuple(_str_list(data, "label_names")),
            mean=_float_tuple(norm, "normalization.mean"),
            std=_float_tuple(norm, "normalization.std"),
            input_range=_float_tuple(norm, "normalization.input_range", 2, default=(0.0, 1.0)),  # type: ignore[arg-type]
            model_task=str(data.get("model_task", "image-classification")),
            training=training,
        )


def _field(data: dict[str, Any], key: str) -> Any:
    """A field by its dotted name (the last part is the key in ``data``)."""
    name = key.rsplit(".", 1)[-1]
    if name not in data:
        raise ValueError(f"config.{key}: missing")
    return data[name]


def _int(data: dict[str, Any], key: str) -> int:
    value = _field(data, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"config.{key}: expected an integer")
    return value


def _int_tuple(data: dict[str, Any], key: str, length: int | None = None) -> tuple[int, ...]:
    value = _field(data, key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"config.{key}: expected a list of integers")
    if length is not None and len(value) != length:
        raise ValueError(f"config.{key}: expected {length} integers")
    return tuple(value)


def _float_tuple(
    data: dict[str, Any], key: str, length: int | None = None, default: tuple[float, ...] | None = None
) -> tuple[float, ...]:
    if default is not None and key.rsplit(".", 1)[-1] not in data:
        return default
    value = _field(data, key)
    ok = isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or (length is not None and len(value) != length):
        raise ValueError(f"config.{key}: expected a list of {length or 'some'} numbers")
    return tuple(float(v) for v in value)


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = _field(data, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"config.{key}: expected a list of strings")
    return value


def _check_config(config: CnnConfig) -> None:
    """Bounds that keep a hostile config from allocating a huge network."""
    c, h, w = config.input_shape
    checks: Sequence[tuple[bool, str]] = (
        (2 <= config.num_classes <= MAX_CLASSES, f"num_classes: expected 2..{MAX_CLASSES}"),
        (1 <= c <= 4 and 1 <= h <= MAX_SIDE and h == w, f"input_shape: expected [1..4, N, N] with N <= {MAX_SIDE}"),
        (1 <= len(config.channels) <= MAX_CONV_LAYERS, f"channels: expected 1..{MAX_CONV_LAYERS} layers"),
        (all(1 <= ch <= MAX_CHANNELS for ch in config.channels), f"channels: expected 1..{MAX_CHANNELS} each"),
        (h % 2 ** len(config.channels) == 0, "input_shape: side must be divisible by 2 per conv layer"),
        (1 <= config.hidden_units <= MAX_HIDDEN, f"hidden_units: expected 1..{MAX_HIDDEN}"),
        (len(config.label_names) == config.num_classes, "label_names: expected one name per class"),
        (len(config.mean) == c and len(config.std) == c, "normalization: expected one mean and std per channel"),
        (all(math.isfinite(s) and s > 0 for s in config.std), "normalization.std: expected positive numbers"),
        (all(math.isfinite(m) for m in config.mean), "normalization.mean: expected finite numbers"),
        (config.input_range[0] < config.input_range[1], "normalization.input_range: expected [low, high]"),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(f"config.{message}")


def read_config(model_dir: Path) -> CnnConfig:
    """Read and validate ``config.json`` of a model folder (size-bounded)."""
    path = model_dir / CONFIG_FILE
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{CONFIG_FILE}: larger than {MAX_CONFIG_BYTES} bytes")
    return CnnConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_config(model_dir: Path, config: CnnConfig) -> Path:
    path = model_dir / CONFIG_FILE
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


@functools.cache
def _model_class() -> type[nn.Module]:
    """Define the network class on first use, so torch is only imported when needed."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """conv(3x3)-ReLU-maxpool blocks, then a one-hidden-layer classifier; normalizes its input."""

        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self, config: CnnConfig) -> None:
            super().__init__()
            self.config = config
            shape = (1, len(config.mean), 1, 1)
            self.register_buffer("mean", torch.tensor(config.mean).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(config.std).view(shape), persistent=False)
            layers: list[nn.Module] = []
            in_channels = config.input_shape[0]
            for out_channels in config.channels:
                layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                in_channels = out_channels
            self.features = nn.Sequential(*layers)
            flat = in_channels * config.feature_side**2
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Linear(flat, config.hidden_units),
                nn.ReLU(),
                nn.Linear(config.hidden_units, config.num_classes),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features((x - self.mean) / self.std))

    return SmallCNN


def build_model(config: CnnConfig) -> nn.Module:
    """A freshly initialized network for ``config`` (seed torch first for reproducible weights)."""
    return _model_class()(config)


def load_model(model_dir: Path, device: str = "cpu") -> nn.Module:
    """Load a model folder from ``config.json`` + ``model.safetensors`` (never pickle), in eval mode.

    Every tensor must match the architecture exactly (no missing or extra keys).
    """
    from safetensors.torch import load_file

    model = build_model(read_config(model_dir))
    model.load_state_dict(load_file(str(model_dir / WEIGHTS_FILE), device="cpu"), strict=True)
    return model.to(device).eval()


def save_weights(model: nn.Module, model_dir: Path) -> Path:
    """Write the state dict as ``model.safetensors`` (contiguous CPU tensors, deterministic bytes)."""
    from safetensors.torch import save_file

    path = model_dir / WEIGHTS_FILE
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})  # one key: safetensors orders metadata by hash
    return path
