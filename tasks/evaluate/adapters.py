"""Model adapters: what a model folder is (task, classes, input shape) and how to load it safely.

Three kinds of folder are recognised from ``config.json``: the project's small CNN
(``modelgate-small-cnn``), Hugging Face ``transformers`` folders (local files only, safetensors only,
no remote code, nothing missing or unexpected) and torchvision architectures named in a config
(``"architecture": "torchvision:resnet18"``). Weights are read from safetensors only. An
image classifier comes back as a module that takes images in [0, 1] and returns logits (it
normalizes inside), so attacks and trigger searches work in image space. What an adapter cannot
evaluate is refused with a one-line reason that the stage records as ``skipped``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.errors import ModelgateError

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGE_CLASSIFICATION = "image-classification"
TEXT_GENERATION = "text-generation"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MAX_JSON_BYTES = 4 * 1024 * 1024
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt", "tf_model.h5", "flax_model.msgpack")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class NotEvaluable(ModelgateError):
    """A model an evaluation cannot run on (wrong task, unknown format, no safetensors), with the reason."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder declares: enough for an evaluation to accept or refuse it."""

    adapter: str
    architecture: str
    task: str
    num_classes: int | None = None
    label_names: tuple[str, ...] = ()
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_model(model_dir: str | Path) -> ModelInfo:
    """Read ``config.json`` (and a preprocessor config) only; no weights are touched."""
    folder = Path(model_dir)
    config = _read_json(folder / CONFIG_FILE)
    architecture = str(config.get("architecture", ""))
    if architecture == "modelgate-small-cnn":
        return _cnn_info(folder)
    if architecture.startswith("torchvision:"):
        return _torchvision_info(config, architecture)
    if "model_type" in config:
        return _hf_info(folder, config)
    raise NotEvaluable(f"{CONFIG_FILE}: unknown model format (no 'architecture' or 'model_type')")


def image_classifier_refusal(info: ModelInfo) -> str | None:
    """Why an image evaluation cannot run on this model, or None when it can."""
    if info.task != IMAGE_CLASSIFICATION:
        return f"{info.architecture} is a {info.task} model; this evaluation needs an image classifier"
    if info.input_shape is None or not info.num_classes:
        return f"{info.architecture}: the config does not state the input shape and the classes"
    return None


def load_image_classifier(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """An eval-mode module mapping images in [0, 1] to logits, and what it is; NotEvaluable if refused."""
    folder = Path(model_dir)
    info = describe_model(folder)
    refusal = image_classifier_refusal(info)
    if refusal:
        raise NotEvaluable(refusal)
    if info.adapter == "modelgate-small-cnn":
        from modelgate.demo.cnn import load_model

        _require_safetensors(folder)
        return load_model(folder, device="cpu").to(device).eval(), info
    if info.adapter == "torchvision":
        module = _torchvision_model(folder, info)
    else:
        module = _logits(_hf_model(folder, IMAGE_CLASSIFICATION))
    return _normalized(module, info.mean, info.std).to(device).eval(), info


def load_causal_lm(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """A Hugging Face causal language model built from its config with safetensors weights."""
    folder = Path(model_dir)
    info = describe_model(folder)
    if info.adapter != "transformers" or info.task != TEXT_GENERATION:
        raise NotEvaluable(f"{info.architecture} is a {info.task} model, not a transformers causal LM")
    return _hf_model(folder, TEXT_GENERATION).to(device).eval(), info


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotEvaluable(f"{path.name}: missing")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise NotEvaluable(f"{path.name}: larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotEvaluable(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise NotEvaluable(f"{path.name}: expected a JSON object")
    return data


def _cnn_info(folder: Path) -> ModelInfo:
    from modelgate.demo.cnn import read_config

    try:
        cnn = read_config(folder)
    except ValueError as exc:
        raise NotEvaluable(str(exc)) from None
    return ModelInfo(
        "modelgate-small-cnn", "modelgate-small-cnn", cnn.model_task, cnn.num_classes, cnn.label_names,
        cnn.input_shape, cnn.mean, cnn.std,
    )  # fmt: skip


def _torchvision_info(config: dict[str, Any], architecture: str) -> ModelInfo:
    norm = config.get("normalization") or {}
    shape = config.get("input_shape", [3, 224, 224])
    classes = config.get("num_classes")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise NotEvaluable(f"{CONFIG_FILE}: input_shape must be [C, H, W]")
    if not isinstance(classes, int) or classes < 2:
        raise NotEvaluable(f"{CONFIG_FILE}: num_classes must be an integer >= 2")
    names = tuple(str(n) for n in config.get("label_names", range(classes)))
    return ModelInfo(
        "torchvision", architecture, IMAGE_CLASSIFICATION, classes, names, (shape[0], shape[1], shape[2]),
        tuple(norm.get("mean", IMAGENET_MEAN)), tuple(norm.get("std", IMAGENET_STD)),
    )  # fmt: skip


def _hf_task(architectures: list[str]) -> str:
    name = architectures[0] if architectures else ""
    if name.endswith("ForImageClassification"):
        return IMAGE_CLASSIFICATION
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return TEXT_GENERATION
    if name.endswith("ForSequenceClassification"):
        return "text-classification"
    return "other"


def _hf_info(folder: Path, config: dict[str, Any]) -> ModelInfo:
    if config.get("auto_map"):
        raise NotEvaluable(f"{CONFIG_FILE}: asks for remote code (auto_map); remote code is never run")
    architectures = [str(a) for a in config.get("architectures") or []]
    task = _hf_task(architectures)
    architecture = f"transformers:{architectures[0] if architectures else config['model_type']}"
    if task != IMAGE_CLASSIFICATION:
        return ModelInfo("transformers", architecture, task)
    labels = config.get("id2label") or {}
    classes = len(labels) or int(config.get("num_labels", 0))
    names = tuple(str(labels.get(str(i), i)) for i in range(classes))
    side = config.get("image_size", 224)
    side = side[0] if isinstance(side, list) else side
    channels = int(config.get("num_channels", 3))
    prep = _read_json(folder / PREPROCESSOR_FILE) if (folder / PREPROCESSOR_FILE).is_file() else {}
    normalize = prep.get("do_normalize", True)
    mean = tuple(prep.get("image_mean", [0.5] * channels)) if normalize else (0.0,) * channels
    std = tuple(prep.get("image_std", [0.5] * channels)) if normalize else (1.0,) * channels
    return ModelInfo("transformers", architecture, task, classes, names, (channels, int(side), int(side)), mean, std)


def _require_safetensors(folder: Path) -> None:
    if not (folder / WEIGHTS_FILE).is_file() and not (folder / INDEX_FILE).is_file():
        pickled = [name for name in PICKLE_WEIGHTS if (folder / name).exists()]
        also = f" (found {', '.join(pickled)}: pickle-based weights are never loaded)" if pickled else ""
        raise NotEvaluable(f"no {WEIGHTS_FILE} or {INDEX_FILE} in the model folder{also}")


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed by its index (names inside the folder)."""
    from safetensors.torch import load_file

    _require_safetensors(folder)
    if (folder / WEIGHTS_FILE).is_file():
        return load_file(str(folder / WEIGHTS_FILE), device="cpu")
    weight_map = _read_json(folder / INDEX_FILE).get("weight_map") or {}
    shards = sorted({str(v) for v in weight_map.values()})
    if not shards or any("/" in s or "\\" in s or s.startswith(".") or not s.endswith(".safetensors") for s in shards):
        raise NotEvaluable(f"{INDEX_FILE}: weight_map must name .safetensors files inside the folder")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors.update(load_file(str(folder / shard), device="cpu"))
    return tensors


def _hf_model(folder: Path, task: str) -> nn.Module:
    """Load a local folder's safetensors with transformers, no hub, no remote code, nothing missing.

    ``from_pretrained`` (not ``from_config`` + ``load_state_dict``) because transformers 5 converts
    legacy checkpoint key layouts on load; ``use_safetensors=True`` makes it refuse pickle weights.
    """
    import transformers

    _require_safetensors(folder)
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": True,
        "output_loading_info": True,
    }
    loaded: Any
    if task == IMAGE_CLASSIFICATION:
        loaded = transformers.AutoModelForImageClassification.from_pretrained(str(folder), **kwargs)
    else:
        loaded = transformers.AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    model, report = loaded
    missing, unexpected = sorted(report["missing_keys"]), sorted(report["unexpected_keys"])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in report["mismatched_keys"])
    if missing or unexpected or mismatched:
        first = (missing or unexpected or mismatched)[0]
        raise NotEvaluable(
            f"weights do not match the config: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} mismatched (first: {first})"
        )
    return model


def _torchvision_model(folder: Path, info: ModelInfo) -> nn.Module:
    import torch

    try:
        import torchvision.models as tv_models
    except Exception as exc:  # noqa: BLE001 - a broken torchvision build raises RuntimeError, not ImportError
        raise NotEvaluable(
            f"{info.architecture}: torchvision does not import beside torch {torch.__version__} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    name = info.architecture.split(":", 1)[1]
    if name not in tv_models.list_models():
        raise NotEvaluable(f"{info.architecture}: not a torchvision architecture")
    model = tv_models.get_model(name, weights=None, num_classes=info.num_classes)
    try:
        model.load_state_dict(_state_dict(folder), strict=True)
    except RuntimeError as exc:
        raise NotEvaluable(f"weights do not match {info.architecture}: {str(exc).splitlines()[0]}") from None
    return model


@functools.cache
def _module_classes() -> tuple[type[nn.Module], type[nn.Module]]:
    import torch
    from torch import nn

    class Normalized(nn.Module):
        """Takes images in [0, 1] and normalizes them before the wrapped network."""

        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self, inner: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner((x - self.mean) / self.std)

    class Logits(nn.Module):
        """A transformers classifier called with ``pixel_values``, returning the logits tensor."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=x).logits

    return Normalized, Logits


def _normalized(inner: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    return _module_classes()[0](inner, mean, std)


def _logits(inner: nn.Module) -> nn.Module:
    return _module_classes()[1](inner)
