"""The evaluation stages as plain functions returning evidence, and their thin Prefect tasks.

``backdoor_stage`` runs Neural Cleanse and MM-BD and combines them into one verdict calibrated on
clean models (``backdoor_verdict.py``: ``fail`` when it names a target label; each detector's own
flag stays a figure for the reviewer); ``adversarial_stage`` runs PGD. Both load only
safetensors through the adapters, validate the evaluation data first, record the device, and write
their artifacts (trigger PNGs, the norms table, the robustness CSV) under ``out_dir``. A model the
image evaluations cannot run on is ``skipped`` with the reason; bad evaluation data is an ``error``
with a one-line reason; a crash is ``error`` evidence (the gate fails closed on both): the contract
of ``tasks/evaluate/harness.py``, which every evaluation, security or privacy, runs under.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from prefect import task

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.adapters import ModelInfo, load_image_classifier
from tasks.evaluate.adversarial import PGDConfig, RobustnessReport, eps_key, evaluate_robustness
from tasks.evaluate.backdoor import NeuralCleanseConfig, NeuralCleanseResult, neural_cleanse
from tasks.evaluate.backdoor_verdict import BackdoorVerdict, VerdictConfig, combine
from tasks.evaluate.data import EvalData, load_eval_data, per_class
from tasks.evaluate.harness import (
    file_digest,
    guarded,
    image_classifier_info,
    opened_evidence,
    output_dir,
    require_eval_data,
    section_params,
    stage_device,
)
from tasks.evaluate.mmbd import MMBDConfig, MMBDResult, mmbd
from tasks.evaluate.png import encode_png
from tasks.params import check_params_file

if TYPE_CHECKING:
    import torch
    from torch import nn

BACKDOOR, ADVERSARIAL = "backdoor", "adversarial"
PREVIEW_SCALE = 4  # trigger previews are upscaled (nearest) so a 16x16 trigger is visible in the UI

DEFAULT_PARAMS: dict[str, Any] = {
    "device": "auto",
    "neural_cleanse": {
        "samples_per_class": 20,
        "max_samples": 1000,
        "min_samples_per_class": 10,
        "sample_seed": 0,
        **NeuralCleanseConfig().to_dict(),
    },
    "mmbd": MMBDConfig().to_dict(),
    "verdict": VerdictConfig().to_dict(),
    "pgd": {
        "epsilons": {"linf": [0.03, 0.1], "l2": [0.5, 1.0]},
        "steps": 20,
        "relative_step_size": 0.25,
        "restarts": 2,
        "samples": 500,
        "batch_size": 1024,
        "seed": 0,
    },
}


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The ``evaluate:`` section of ``params.yaml`` (the project's by default) over the built-in defaults;
    the whole file is checked strictly first (tasks/params.py)."""
    file = check_params_file(path)
    section: dict[str, Any] = {}
    if file.is_file():
        section = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("evaluate") or {}
    return merge_params(section)


def merge_params(params: Mapping[str, Any] | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (the defaults) overridden section by section: a partial ``pgd:`` keeps the other pgd values.

    The harness's ``section_params`` with ``params`` as the section; kept for the DVC stages' callers.
    """
    return section_params(params, None, base if base is not None else DEFAULT_PARAMS)


def backdoor_stage(
    model_dir: str | Path, eval_data: str, params: Mapping[str, Any] | None = None, out_dir: str | Path | None = None
) -> StageEvidence:
    """Neural Cleanse + MM-BD on an image classifier; ``fail`` when their combined verdict names a target."""
    return guarded(BACKDOOR, lambda: _backdoor(Path(model_dir), eval_data, merge_params(params), output_dir(out_dir)))


def adversarial_stage(
    model_dir: str | Path, eval_data: str, params: Mapping[str, Any] | None = None, out_dir: str | Path | None = None
) -> StageEvidence:
    """PGD L-inf/L2 robustness at the configured epsilons; ``pass`` when it ran (the policy judges the figures)."""
    return guarded(
        ADVERSARIAL, lambda: _adversarial(Path(model_dir), eval_data, merge_params(params), output_dir(out_dir))
    )


def _prepare(
    stage: str, model_dir: Path, eval_data: str, params: dict[str, Any], min_per_class: int
) -> tuple[ModelInfo, EvalData, nn.Module, torch.device, StageEvidence]:
    """Refuse what cannot be evaluated, validate the data, then load the model on the chosen device."""
    info = image_classifier_info(model_dir)
    require_eval_data(eval_data)
    assert info.input_shape is not None
    data = load_eval_data(
        eval_data,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        label_names=info.label_names,
        min_per_class=min_per_class,
    )
    device = stage_device(params)
    model, _ = load_image_classifier(model_dir, device)
    inputs = {"eval_data": data.summary["digest"], "config.json": file_digest(model_dir / "config.json")}
    evidence = opened_evidence(stage, device, inputs, {"model": info.to_dict(), "eval_data": data.summary})
    return info, data, model, device, evidence


def _backdoor(model_dir: Path, eval_data: str, params: dict[str, Any], out_dir: Path) -> StageEvidence:
    nc_params = params["neural_cleanse"]
    info, data, model, device, evidence = _prepare(
        BACKDOOR, model_dir, eval_data, params, int(nc_params["min_samples_per_class"])
    )
    assert info.input_shape is not None and info.num_classes is not None
    per_label = min(int(nc_params["samples_per_class"]), max(1, int(nc_params["max_samples"]) // info.num_classes))
    subset = per_class(data, per_label, int(nc_params["sample_seed"]))
    nc = neural_cleanse(model, subset.x.to(device), info.num_classes, NeuralCleanseConfig.from_params(nc_params))
    mm = mmbd(model, info.num_classes, info.input_shape, MMBDConfig.from_params(params["mmbd"]), device)
    verdict = combine(nc, mm, VerdictConfig.from_params(params["verdict"]))
    names = data.label_names
    artifacts = _write_backdoor_artifacts(out_dir / BACKDOOR, nc, mm, names)
    evidence.metrics = _backdoor_metrics(nc, mm, verdict)
    evidence.tools["neural_cleanse"] = "modelgate batched (Wang et al. 2019 schedule)"
    evidence.tools["mmbd"] = "modelgate (Wang et al. 2024)"
    evidence.details.update(
        {
            "neural_cleanse": {
                "config": nc.config,
                "samples": int(len(subset.y)),
                "norms": _norms_table(nc, mm, names),
                "norms_per_seed": nc.norms_per_seed,
                "reached": nc.reached,
                "epochs_run": nc.epochs_run,
                "pruned_labels": nc.pruned_labels,
                "null_labels": nc.null_labels,
                "passes": nc.passes,
                "row_steps": nc.row_steps,
                "seconds": round(nc.seconds, 3),
            },
            "mmbd": {
                "config": mm.config,
                "margins": mm.margins,
                "step_p_values": [_finite(p) for p in mm.step_p_values],
                "seconds": round(mm.seconds, 3),
            },
            "verdict": {"config": params["verdict"], "targets": verdict.targets, "rules": verdict.rules},
            "artifacts": artifacts,
        }
    )
    if verdict.flagged:
        evidence.status = Status.FAIL
        evidence.reason = verdict.reason(names, nc, mm)
    return evidence


def _backdoor_metrics(nc: NeuralCleanseResult, mm: MMBDResult, verdict: BackdoorVerdict) -> dict[str, Any]:
    return {
        "backdoor.verdict_flagged": verdict.flagged,
        "backdoor.targets": list(verdict.targets),
        "backdoor.anomaly_index": round(nc.anomaly_index, 6),
        "backdoor.suspect_label": nc.suspect_label,
        "backdoor.flagged": nc.flagged,
        "backdoor.min_norm": round(min(nc.norms), 6),
        "backdoor.median_norm": round(float(np.median(nc.norms)), 6),
        "backdoor.mmbd_p_value": _finite(mm.p_value),
        "backdoor.mmbd_suspect_label": mm.suspect_label,
        "backdoor.mmbd_flagged": mm.flagged,
        "backdoor.mmbd_max_margin": round(max(mm.margins), 6),
        "backdoor.suspect_labels": list(nc.suspect_labels),
        "backdoor.mmbd_suspect_labels": list(mm.suspect_labels),
    }


def _finite(value: float) -> float:
    return round(value, 8) if math.isfinite(value) else 1.0


def _norms_table(nc: NeuralCleanseResult, mm: MMBDResult, names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "label": k,
            "name": names[k],
            "l1_norm": round(nc.norms[k], 4),
            "anomaly_index": round(nc.label_anomaly[k], 4),
            "reached": all(seed[k] for seed in nc.reached),
            "mmbd_margin": round(mm.margins[k], 4),
        }
        for k in range(len(nc.norms))
    ]


def _write_backdoor_artifacts(
    folder: Path, nc: NeuralCleanseResult, mm: MMBDResult, names: tuple[str, ...]
) -> dict[str, Any]:
    """Per label: the trigger and mask PNGs and an upscaled preview; all previews in one strip; the norms CSV."""
    paths: dict[str, list[str]] = {"triggers": [], "masks": [], "previews": []}
    previews = preview_images(nc)
    for kind, images in (("triggers", nc.trigger_pngs()), ("masks", nc.mask_pngs()), ("previews", None)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for k in range(len(nc.norms)):
            path = folder / kind / f"label-{k}.png"
            path.write_bytes(images[k] if images is not None else encode_png(previews[k]))
            paths[kind].append(str(path))
    strip = folder / "triggers.png"
    padded = [np.pad(p, ((0, 0), (0, 2), (0, 0)), constant_values=128) for p in previews]
    strip.write_bytes(encode_png(np.concatenate(padded, axis=1)))
    columns = ("label", "name", "l1_norm", "anomaly_index", "reached", "mmbd_margin")
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in _norms_table(nc, mm, names)]
    csv = folder / "norms.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {**paths, "strip": str(strip), "norms_csv": str(csv)}


def preview_images(nc: NeuralCleanseResult, scale: int = PREVIEW_SCALE) -> list[np.ndarray]:
    """Each label's trigger as an ``(H*scale, W*scale, C)`` uint8 image (nearest-neighbour upscale)."""
    images = (nc.triggers.detach().cpu().permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return [image.repeat(scale, axis=0).repeat(scale, axis=1) for image in images]


def _adversarial(model_dir: Path, eval_data: str, params: dict[str, Any], out_dir: Path) -> StageEvidence:
    pgd_params = params["pgd"]
    info, data, model, device, evidence = _prepare(ADVERSARIAL, model_dir, eval_data, params, 1)
    assert info.num_classes is not None
    samples = int(pgd_params.get("samples") or 0)
    subset = per_class(data, math.ceil(samples / info.num_classes), int(pgd_params["seed"])) if samples else data
    attacks = attack_configs(pgd_params)
    report = evaluate_robustness(model, subset.x.to(device), subset.y.to(device), attacks)
    folder = out_dir / ADVERSARIAL
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "robustness.csv"
    csv.write_text(report.csv(), encoding="utf-8")
    evidence.metrics = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in report.metrics().items()}
    evidence.tools["pgd"] = "modelgate batched PGD (Madry et al. 2018)"
    evidence.details.update(
        {
            "pgd": {"attacks": report.rows, "samples": report.samples, "seconds": round(report.seconds, 3)},
            "artifacts": {"robustness_csv": str(csv)},
        }
    )
    return evidence


def attack_configs(pgd_params: Mapping[str, Any]) -> list[PGDConfig]:
    """One PGD configuration per (norm, eps) in ``params.yaml``; step size = relative_step_size * eps."""
    epsilons = pgd_params.get("epsilons") or {}
    unknown = sorted(set(epsilons) - {"linf", "l2"})
    if unknown:
        raise ValueError(f"pgd.epsilons: unknown norm {unknown[0]!r} (use linf, l2)")
    return [
        PGDConfig(
            norm=norm,
            eps=float(eps),
            steps=int(pgd_params["steps"]),
            step_size=float(pgd_params["relative_step_size"]) * float(eps),
            restarts=int(pgd_params["restarts"]),
            seed=int(pgd_params["seed"]),
            batch_size=int(pgd_params["batch_size"]),
        )
        for norm in ("linf", "l2")
        for eps in epsilons.get(norm, [])
    ]


def robustness_rows(evidence: StageEvidence) -> list[dict[str, Any]]:
    """The PGD table of an adversarial evidence (norm, eps, robust accuracy, attack success rate)."""
    rows = evidence.details.get("pgd", {}).get("attacks", [])
    return [
        {
            "norm": r["norm"],
            "eps": eps_key(r["eps"]),
            "robust_accuracy": round(r["robust_accuracy"], 4),
            "attack_success_rate": round(r["attack_success_rate"], 4),
        }
        for r in rows
    ]


backdoor_task = task(name="eval-backdoor", task_run_name="eval-backdoor")(backdoor_stage)
adversarial_task = task(name="eval-adversarial", task_run_name="eval-adversarial")(adversarial_stage)

__all__ = [
    "DEFAULT_PARAMS",
    "RobustnessReport",
    "adversarial_stage",
    "adversarial_task",
    "attack_configs",
    "backdoor_stage",
    "backdoor_task",
    "load_params",
    "merge_params",
    "preview_images",
    "robustness_rows",
]
