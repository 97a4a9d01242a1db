"""Model inversion for a human reviewer: one reconstructed image per class (Fredrikson et al. 2015).

Public weights let anyone ask the model "what does class c look like to you?" by gradient ascent
on the input; when the answer resembles the training data, the model gives away what its training
images look like. All classes are optimized in one batch (chunks of ``batch_size`` classes for
large label sets): from the mean evaluation image (gray without evaluation data), Adam on the
pixels minimizes a hinge on the class margin ``max(0, margin - (z_c - max_{j != c} z_j))`` plus a
total-variation prior, clamped to [0, 1], for a fixed number of steps. The hinge stops pushing
once the class is confidently reached, so the prior shapes the rest (an unbounded logit objective
drowns any prior and yields saturated noise). ART's ``MIFace`` minimizes ``1 - p_c`` per class.

The stage is a report, never a verdict: it always passes when it ran. With evaluation data it
measures how much each inversion resembles that class's held-out images: the cosine similarity of
the inversion and the class-mean image, both taken relative to the mean image of all classes (raw
cosines of non-negative images are high for any pair), and whether the nearest class mean is the
right class.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.adapters import load_image_classifier
from tasks.evaluate.data import load_eval_data
from tasks.evaluate.device import frozen
from tasks.evaluate.harness import (
    file_digest,
    guarded,
    image_classifier_info,
    opened_evidence,
    output_dir,
    section_params,
    stage_device,
)
from tasks.evaluate.png import encode_png
from tasks.evaluate.privacy.mia import cpu_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

INVERSION = "inversion"
PREVIEW_SCALE = 4

DEFAULT_INVERSION_PARAMS: dict[str, Any] = {
    "steps": 300,  # Adam steps on the pixels (fixed budget)
    "lr": 0.02,
    "margin": 20.0,  # logit margin over the runner-up class beyond which the class term stops pushing
    "tv_weight": 1.0,  # total-variation prior (smooth images)
    "l2_weight": 0.0,  # pull towards the starting image
    "init": "mean",  # mean: the mean evaluation image (gray without data); gray: 0.5 everywhere
    "batch_size": 256,  # classes optimized together
    "cpu_threads": 1,  # torch threads on the CPU (0: torch's default), as in the membership stage
}


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 300
    lr: float = 0.02
    margin: float = 20.0
    tv_weight: float = 1.0
    l2_weight: float = 0.0
    init: str = "mean"
    batch_size: int = 256
    cpu_threads: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InversionConfig:
        merged = {**DEFAULT_INVERSION_PARAMS, **params}
        config = cls(
            int(merged["steps"]), float(merged["lr"]), float(merged["margin"]), float(merged["tv_weight"]),
            float(merged["l2_weight"]), str(merged["init"]), int(merged["batch_size"]), int(merged["cpu_threads"]),
        )  # fmt: skip
        if config.init not in ("mean", "gray"):
            raise ValueError(f"inversion.init: expected mean or gray, got {config.init!r}")
        if config.steps < 1 or config.batch_size < 1 or not config.lr > 0:
            raise ValueError("inversion: steps and batch_size must be >= 1 and lr > 0")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InversionResult:
    """One image per class (K, C, H, W) in [0, 1], the model's confidence in the class before and after."""

    images: torch.Tensor
    confidence: np.ndarray
    start_confidence: np.ndarray
    similarity: np.ndarray | None  # (K, K): inversion k vs class-mean j, centred on the overall mean
    config: InversionConfig
    seconds: float

    def nearest_class(self) -> np.ndarray | None:
        return None if self.similarity is None else self.similarity.argmax(axis=1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy


def invert_classes(
    model: nn.Module,
    num_classes: int,
    input_shape: tuple[int, int, int],
    config: InversionConfig,
    device: torch.device,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """The inversion of every class, optimized together in chunks of ``config.batch_size`` classes.

    ``start`` is the ``(C, H, W)`` starting image (gray when None).
    """
    import torch

    x0 = (start if start is not None else torch.full(input_shape, 0.5)).to(device, torch.float32)
    results = []
    with frozen(model):
        for labels in torch.arange(num_classes, device=device).split(config.batch_size):
            init = x0.expand(len(labels), *input_shape).clone()
            x = init.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([x], lr=config.lr)
            rows = torch.arange(len(labels), device=device)
            for _ in range(config.steps):
                logits = model(x)
                runner_up = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
                hinge = (config.margin - (logits[rows, labels] - runner_up)).clamp(min=0)
                prior = config.tv_weight * total_variation(x) + config.l2_weight * (x - init).pow(2).mean(dim=(1, 2, 3))
                optimizer.zero_grad()
                (hinge + prior).sum().backward()
                optimizer.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            results.append(x.detach())
    return torch.cat(results)


def class_confidence(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """``p_k(images[k])``: the model's probability of class k on image k."""
    import torch

    with torch.no_grad():
        probs = model(images).float().softmax(dim=1)
    return probs[torch.arange(len(images)), torch.arange(len(images))].cpu().double().numpy()


def centred_similarity(images: torch.Tensor, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """``(K, K)`` cosine similarity of inversion k and the class-mean image j, both minus the overall mean image."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's usual alias

    x = x.to(images.device, torch.float32)
    y = y.to(images.device)
    overall = x.mean(dim=0)
    means = torch.stack([x[y == c].mean(dim=0) for c in range(num_classes)])
    a = F.normalize((images - overall).flatten(1), dim=1)
    b = F.normalize((means - overall).flatten(1), dim=1)
    return (a @ b.T).cpu().double().numpy()


def invert(
    model: nn.Module,
    num_classes: int,
    input_shape: tuple[int, int, int],
    config: InversionConfig,
    device: torch.device,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> InversionResult:
    """Invert every class; with ``data`` (x, y) start from its mean image and measure the resemblance."""
    import torch

    begin = time.perf_counter()
    start = data[0].float().mean(dim=0) if data is not None and config.init == "mean" else None
    images = invert_classes(model, num_classes, input_shape, config, device, start)
    x0 = (start if start is not None else torch.full(input_shape, 0.5)).to(device)
    start_confidence = class_confidence(model, x0.expand(num_classes, *input_shape))
    similarity = centred_similarity(images, data[0], data[1], num_classes) if data is not None else None
    return InversionResult(
        images, class_confidence(model, images), start_confidence, similarity, config, time.perf_counter() - begin
    )


def preview(image: torch.Tensor, scale: int = PREVIEW_SCALE) -> np.ndarray:
    """A ``(C, H, W)`` image in [0, 1] as ``(H*scale, W*scale, C)`` uint8 (nearest-neighbour upscale)."""
    pixels = (image.detach().cpu().permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def inversion_stage(
    model_dir: str | Path, eval_data: str, params: Mapping[str, Any] | None = None, out_dir: str | Path | None = None
) -> StageEvidence:
    """One inversion per class as PNGs for the reviewer; ``pass`` when it ran (a report, not a verdict).

    ``eval_data`` is optional here: without it the inversions start from gray and no similarity is measured.
    """
    return guarded(INVERSION, lambda: _inversion(Path(model_dir), eval_data, params or {}, output_dir(out_dir)))


def _inversion(model_dir: Path, eval_data: str, params: Mapping[str, Any], out_dir: Path) -> StageEvidence:
    config = InversionConfig.from_params(section_params(params, INVERSION, DEFAULT_INVERSION_PARAMS))
    info = image_classifier_info(model_dir)
    assert info.input_shape is not None and info.num_classes is not None
    data = None
    if eval_data:
        data = load_eval_data(
            eval_data, input_shape=info.input_shape, num_classes=info.num_classes, label_names=info.label_names
        )
    device = stage_device(params)
    model, _ = load_image_classifier(model_dir, device)
    with cpu_threads(device, config.cpu_threads):
        result = invert(
            model, info.num_classes, info.input_shape, config, device, (data.x, data.y) if data is not None else None
        )
    names = data.label_names if data is not None else info.label_names or tuple(str(k) for k in range(info.num_classes))
    inputs = {"config.json": file_digest(model_dir / "config.json")}
    if data is not None:
        inputs["eval_data"] = data.summary["digest"]
    summary = data.summary if data is not None else None
    evidence = opened_evidence(INVERSION, device, inputs, {"model": info.to_dict(), "eval_data": summary})
    evidence.tools["inversion"] = "modelgate batched class inversion (Fredrikson et al. 2015)"
    artifacts = _write_artifacts(out_dir / INVERSION, result)
    rows = _rows(result, names, artifacts["classes"])
    evidence.metrics = {
        f"{INVERSION}.classes": info.num_classes,
        f"{INVERSION}.mean_target_confidence": round(float(result.confidence.mean()), 6),
    }
    if result.similarity is not None:
        own = np.diag(result.similarity)
        nearest = result.nearest_class()
        assert nearest is not None
        evidence.metrics.update(
            {
                f"{INVERSION}.mean_similarity": round(float(own.mean()), 6),
                f"{INVERSION}.max_similarity": round(float(own.max()), 6),
                f"{INVERSION}.nearest_class_rate": round(float((nearest == np.arange(len(own))).mean()), 6),
            }
        )
    evidence.details.update(
        {"config": config.to_dict(), "classes": rows, "seconds": round(result.seconds, 3), "artifacts": artifacts}
    )
    return evidence


def _rows(result: InversionResult, names: tuple[str, ...], pngs: list[str]) -> list[dict[str, Any]]:
    nearest = result.nearest_class()
    rows = []
    for k, png in enumerate(pngs):
        row: dict[str, Any] = {
            "label": k,
            "name": names[k] if k < len(names) else str(k),
            "confidence": round(float(result.confidence[k]), 6),
            "start_confidence": round(float(result.start_confidence[k]), 6),
            "similarity": None,
            "nearest_class": None,
            "png": png,
        }
        if result.similarity is not None and nearest is not None:
            row["similarity"] = round(float(result.similarity[k, k]), 6)
            row["nearest_class"] = int(nearest[k])
        rows.append(row)
    return rows


def _write_artifacts(folder: Path, result: InversionResult) -> dict[str, Any]:
    """``class-<k>.png`` (upscaled x4) per class and ``inversions.png``, all classes side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    previews = [preview(image) for image in result.images]
    paths = []
    for k, image in enumerate(previews):
        path = folder / f"class-{k}.png"
        path.write_bytes(encode_png(image))
        paths.append(str(path))
    strip = folder / "inversions.png"
    padded = [np.pad(p, ((0, 0), (0, 2), (0, 0)), constant_values=128) for p in previews]
    strip.write_bytes(encode_png(np.concatenate(padded, axis=1)))
    return {"classes": paths, "strip": str(strip)}


def inversion_markdown(evidence: StageEvidence, name: str) -> str:
    """A reviewer's page: what inversion shows, the figures, then every class's inversion inline (PNG data URI)."""
    if evidence.status is not Status.PASS:
        return f"# Model inversion: {name}\n\nNot run ({evidence.status.value}): {evidence.reason}\n"
    metrics, details = evidence.metrics, evidence.details
    lines = [
        f"# Model inversion: {name}",
        "",
        "Each image is what the model itself reconstructs for a class by gradient ascent on the input "
        "(Fredrikson et al. 2015). An inversion that looks like real training images means the released "
        "weights disclose what the training data looks like; noise-like inversions are the usual outcome "
        "for small models. A report for a reviewer, not a verdict.",
        "",
        f"Classes: {metrics[f'{INVERSION}.classes']}; mean confidence of the model in the inverted class: "
        f"{metrics[f'{INVERSION}.mean_target_confidence']:.3f}.",
    ]
    if f"{INVERSION}.mean_similarity" in metrics:
        lines.append(
            f"Similarity to the held-out class means (cosine, relative to the overall mean image): mean "
            f"{metrics[f'{INVERSION}.mean_similarity']:.3f}, max {metrics[f'{INVERSION}.max_similarity']:.3f}; "
            f"nearest class mean is the right class for {metrics[f'{INVERSION}.nearest_class_rate']:.0%} of classes."
        )
    lines += ["", "| class | inversion | confidence | similarity | nearest class mean |", "|---|---|---|---|---|"]
    for row in details["classes"]:
        data = base64.b64encode(Path(row["png"]).read_bytes()).decode()
        similarity = "-" if row["similarity"] is None else f"{row['similarity']:.3f}"
        nearest = "-" if row["nearest_class"] is None else str(row["nearest_class"])
        lines.append(
            f"| {row['label']} ({row['name']}) | ![class {row['label']}](data:image/png;base64,{data}) "
            f"| {row['confidence']:.3f} | {similarity} | {nearest} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_INVERSION_PARAMS",
    "InversionConfig",
    "InversionResult",
    "centred_similarity",
    "class_confidence",
    "invert",
    "invert_classes",
    "inversion_markdown",
    "inversion_stage",
]
