"""Weight forensics: compare a candidate's tensors with a trusted reference checkpoint of the same architecture.

Cheap (one pass over the safetensors files, no data, no forward pass) and the natural screen for
Feng & Tramèr's data traps, which are a few units with outsized weights or biases, and for a
"fine-tune" that changed layers its model card says it left alone. Per tensor: shape, the L2 norm
of the difference relative to the reference norm, mean/std, cosine similarity. Per unit (output
row of a weight with two or more axes, and its bias): how far the unit moved, in robust standard
deviations (1.4826 x MAD) of the reference layer's own units: a trap unit moves by tens to
thousands, a fine-tune by a fraction. Measuring the move (not the level) keeps a reference's own
natural outliers from being flagged. Norms are blind to a row turned to a new direction at its old
length (a norm-preserving trap), so each row's *rewrite* (the L2 change of the row over the
reference row's norm) is judged as well: a row rewritten by more than ``rewrite_threshold`` in a
layer whose typical row changed ``rewrite_ratio`` times less is a unit replaced in a layer kept.
Weights are read from safetensors only (headers first, then one tensor of each model at a time):
nothing is unpickled.
"""

from __future__ import annotations

import fnmatch
import json
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.adapters import INDEX_FILE, WEIGHTS_FILE, NotEvaluable, describe_model
from tasks.evaluate.harness import file_digest, guarded, refuse_unknown, section_params

if TYPE_CHECKING:
    import torch

FORENSICS = "forensics"
NO_REFERENCE = "no reference checkpoint named in the request"
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAD_SCALE = 1.4826  # MAD of a normal distribution times this is its standard deviation
TOP_UNITS = 20  # the most-moved units listed in the details (all outliers are counted)

DEFAULT_FORENSICS_PARAMS: dict[str, Any] = {
    "expected_changed": ["*"],  # glob patterns of tensors the model card says were changed; ["*"]: no claim
    "tolerance": 1e-3,  # relative L2 change above which a tensor counts as changed
    "unit_z_threshold": 8.0,  # a unit that moved more than this many robust SDs of its layer is an outlier
    "max_outlier_units": 0,  # more outlier units than this flags the model
    # A row rewritten (|change| / |reference row|) past this, in a layer whose median row changed
    # rewrite_ratio times less, is an outlier unit too: a new direction at the old norm.
    "rewrite_threshold": 0.5,
    "rewrite_ratio": 5.0,
}


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (``model.safetensors`` or the shards of its index)."""
    from safetensors import safe_open

    if (folder / WEIGHTS_FILE).is_file():
        files = [folder / WEIGHTS_FILE]
    elif (folder / INDEX_FILE).is_file():
        files = [folder / shard for shard in _shards(folder / INDEX_FILE)]
    else:
        raise NotEvaluable(f"{folder.name}: no {WEIGHTS_FILE} or {INDEX_FILE} (only safetensors weights are read)")
    names: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            names.update({name: file for name in handle.keys()})  # noqa: SIM118 - a safe_open handle, not a dict
    return names


def _shards(index: Path) -> list[str]:
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise NotEvaluable(f"{INDEX_FILE}: larger than {MAX_INDEX_BYTES} bytes")
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
    except (ValueError, AttributeError) as exc:
        raise NotEvaluable(f"{INDEX_FILE}: not a safetensors index ({exc})") from None
    shards = sorted({str(v) for v in weight_map.values()})
    if not shards or any("/" in s or "\\" in s or s.startswith(".") or not s.endswith(".safetensors") for s in shards):
        raise NotEvaluable(f"{INDEX_FILE}: weight_map must name .safetensors files inside the folder")
    return shards


def tensor_specs(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) from the safetensors headers alone."""
    from safetensors import safe_open

    specs: dict[str, tuple[str, tuple[int, ...]]] = {}
    by_file: dict[Path, list[str]] = {}
    for name, file in tensor_files(folder).items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for name in names:
                sliced = handle.get_slice(name)
                specs[name] = (str(sliced.get_dtype()), tuple(int(d) for d in sliced.get_shape()))
    return specs


def architecture_mismatch(model_dir: str | Path, reference_dir: str | Path) -> str | None:
    """Why candidate and reference are not the same architecture (config, tensor names, shapes), or None."""
    cand, ref = describe_model(model_dir), describe_model(reference_dir)
    for field in ("adapter", "architecture", "task", "num_classes", "input_shape"):
        a, b = getattr(cand, field), getattr(ref, field)
        if a != b:
            return f"candidate and reference differ in architecture: {field} {a!r} vs {b!r}"
    specs_c, specs_r = tensor_specs(Path(model_dir)), tensor_specs(Path(reference_dir))
    only_c, only_r = sorted(set(specs_c) - set(specs_r)), sorted(set(specs_r) - set(specs_c))
    if only_c or only_r:
        first = f"{only_c[0]!r} only in the candidate" if only_c else f"{only_r[0]!r} only in the reference"
        count = len(only_c) + len(only_r)
        return f"candidate and reference differ in architecture: {count} tensor names differ ({first})"
    for name in sorted(specs_c):
        if specs_c[name][1] != specs_r[name][1]:
            return (
                f"candidate and reference differ in architecture: {name} has shape "
                f"{list(specs_c[name][1])} vs {list(specs_r[name][1])}"
            )
    return None


def _pairs(model_dir: Path, reference_dir: Path) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, candidate, reference) CPU tensors, one pair in memory at a time, sorted by name."""
    from safetensors import safe_open

    files_c, files_r = tensor_files(model_dir), tensor_files(reference_dir)
    for name in sorted(files_c):
        with safe_open(str(files_c[name]), framework="pt") as hc, safe_open(str(files_r[name]), framework="pt") as hr:
            yield name, hc.get_tensor(name), hr.get_tensor(name)


def _layer_row(name: str, cand: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    import torch

    c, r = cand.double().flatten(), ref.double().flatten()
    ref_norm, diff = float(r.norm()), float((c - r).norm())
    denominator = float(c.norm()) * ref_norm
    return {
        "tensor": name,
        "shape": list(cand.shape),
        "dtype": str(cand.dtype).removeprefix("torch."),
        "reference_norm": round(ref_norm, 6),
        "candidate_norm": round(float(c.norm()), 6),
        "relative_change": _ratio(diff, ref_norm),
        "cosine": round(float(torch.dot(c, r)) / denominator, 6) if denominator > 0 else (1.0 if diff == 0 else 0.0),
        "candidate_mean": round(float(c.mean()), 6) if c.numel() else 0.0,
        "reference_mean": round(float(r.mean()), 6) if r.numel() else 0.0,
        "candidate_std": round(float(c.std()), 6) if c.numel() > 1 else 0.0,
        "reference_std": round(float(r.std()), 6) if r.numel() > 1 else 0.0,
    }


def _ratio(diff: float, ref_norm: float) -> float:
    if diff == 0:
        return 0.0
    return round(diff / ref_norm, 6) if ref_norm > 0 else math.inf


def unit_moves(cand: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """How far each unit's value moved, in robust SDs of the reference units' values (``cand``, ``ref``: (units,))."""
    median = np.median(ref)
    spread = MAD_SCALE * np.median(np.abs(ref - median))
    scale = max(spread, 1e-3 * float(np.median(np.abs(ref))), 1e-12)
    return np.abs(cand - ref) / scale


def row_rewrites(cand: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Each row's L2 change over its reference row's norm (floored at a tenth of the layer's median row norm,
    so a dead unit's row does not divide by zero); ``cand``, ``ref``: (rows, fan_in)."""
    norms = np.linalg.norm(ref, axis=1)
    floor = max(0.1 * float(np.median(norms)), 1e-12)
    return np.asarray(np.linalg.norm(cand - ref, axis=1) / np.maximum(norms, floor))


def _rewrite_rows(name: str, cand: np.ndarray, ref: np.ndarray, threshold: float, ratio: float) -> list[dict[str, Any]]:
    """The rows rewritten past ``threshold`` while the layer's median row changed ``ratio`` times less."""
    rewrites = row_rewrites(cand, ref)
    typical = float(np.median(rewrites))
    layer = name.rsplit(".", 1)[0]
    rows = []
    for i in np.flatnonzero((rewrites > threshold) & (rewrites > ratio * typical)):
        rows.append(
            {
                "tensor": name,
                "layer": layer,
                "kind": "direction",
                "unit": int(i),
                "rewrite": round(float(rewrites[i]), 4),
                "layer_median_rewrite": round(typical, 6),
                "reference_norm": round(float(np.linalg.norm(ref[i])), 6),
                "candidate_norm": round(float(np.linalg.norm(cand[i])), 6),
            }
        )
    return sorted(rows, key=lambda row: -row["rewrite"])


def _unit_rows(name: str, kind: str, cand: np.ndarray, ref: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """One row per unit that moved past ``threshold`` plus the most-moved others (at most ``TOP_UNITS`` of those)."""
    moves = unit_moves(cand, ref)
    order = np.argsort(-moves, kind="stable")
    keep = np.union1d(np.flatnonzero(moves > threshold), order[:TOP_UNITS])
    layer = name.rsplit(".", 1)[0]
    return [
        {
            "tensor": name,
            "layer": layer,
            "kind": kind,
            "unit": int(i),
            "reference": round(float(ref[i]), 6),
            "candidate": round(float(cand[i]), 6),
            "z": round(float(moves[i]), 3),
            "outlier": bool(moves[i] > threshold),
        }
        for i in keep
        if moves[i] > 0
    ]


def forensics_stage(
    model_dir: str | Path | None,
    reference_dir: str | Path | None,
    params: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> StageEvidence:
    """Per-layer and per-unit comparison with the reference; ``fail`` on outlier units or unexpected changes.

    ``params`` is the ``evaluate:`` section (its ``forensics`` mapping is used) or the forensics mapping itself.
    """
    section = forensics_params(params)
    return guarded(FORENSICS, lambda: _forensics(model_dir, reference_dir, section, out_dir))


def forensics_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``forensics`` section (given alone or inside the ``evaluate:`` settings) over the defaults.

    An unknown parameter is a ``ValueError`` raised to the caller (a typo must not quietly keep a default).
    """
    name = FORENSICS if FORENSICS in (params or {}) else None
    section = section_params(params, name, DEFAULT_FORENSICS_PARAMS)
    refuse_unknown(section, DEFAULT_FORENSICS_PARAMS, FORENSICS, also=("device",))
    return section


def _forensics(
    model_dir: str | Path | None, reference_dir: str | Path | None, section: dict[str, Any], out_dir: str | Path | None
) -> StageEvidence:
    if not reference_dir:
        return StageEvidence(stage=FORENSICS, status=Status.SKIPPED, reason=NO_REFERENCE)
    if not model_dir:
        raise NotEvaluable("no candidate model folder")
    start = time.perf_counter()
    cand_dir, ref_dir = Path(model_dir), Path(reference_dir)
    mismatch = architecture_mismatch(cand_dir, ref_dir)
    if mismatch:
        return StageEvidence(stage=FORENSICS, status=Status.SKIPPED, reason=mismatch)
    tolerance, threshold = float(section["tolerance"]), float(section["unit_z_threshold"])
    expected = [str(p) for p in section["expected_changed"] or []]
    rewrite = (float(section["rewrite_threshold"]), float(section["rewrite_ratio"]))
    layers, units, rewritten = _compare(cand_dir, ref_dir, threshold, rewrite)
    for row in layers:
        row["changed"] = row["relative_change"] > tolerance
        row["expected"] = any(fnmatch.fnmatchcase(row["tensor"], p) for p in expected)
    unexpected = [r["tensor"] for r in layers if r["changed"] and not r["expected"]]
    units.sort(key=lambda u: -u["z"])
    outliers = [u for u in units if u["outlier"]]
    # a unit's weight row, its bias and its direction count once
    outlier_units = len({(u["layer"], u["unit"]) for u in [*outliers, *rewritten]})
    flagged = bool(unexpected) or outlier_units > int(section["max_outlier_units"])
    evidence = StageEvidence(stage=FORENSICS, status=Status.FAIL if flagged else Status.PASS)
    evidence.metrics = {
        "forensics.layers": len(layers),
        "forensics.layers_changed": sum(r["changed"] for r in layers),
        "forensics.unexpected_layers_changed": len(unexpected),
        "forensics.outlier_units": outlier_units,
        "forensics.max_unit_zscore": round(units[0]["z"], 3) if units else 0.0,
        "forensics.rewritten_units": len({(u["layer"], u["unit"]) for u in rewritten}),
        "forensics.max_relative_change": _finite(max((r["relative_change"] for r in layers), default=0.0)),
        "forensics.flagged": flagged,
    }
    evidence.inputs = {
        f"{label}:{f.name}": file_digest(f)
        for label, folder in (("candidate", cand_dir), ("reference", ref_dir))
        for f in sorted(set(tensor_files(folder).values()))
    }
    evidence.details = {
        "params": {**section, "expected_changed": expected},
        "layers": layers,
        "unexpected_layers": unexpected,
        "outlier_units": outliers[:TOP_UNITS],
        "outlier_layers": sorted({u["layer"] for u in [*outliers, *rewritten]}),
        "rewritten_units": sorted(rewritten, key=lambda u: -u["rewrite"])[:TOP_UNITS],
        "top_units": units[:TOP_UNITS],
        "seconds": round(time.perf_counter() - start, 3),
    }
    if flagged:
        evidence.reason = _reason(unexpected, outliers, outlier_units, threshold, rewritten, rewrite)
    if out_dir:
        folder = Path(out_dir) / FORENSICS
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "layers.json").write_text(json.dumps(layers, indent=2, default=str) + "\n", encoding="utf-8")
        evidence.details["artifacts"] = {"layers_json": str(folder / "layers.json")}
    return evidence


def _compare(
    cand_dir: Path, ref_dir: Path, threshold: float, rewrite: tuple[float, float]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Layer rows for every tensor, the most-moved unit rows of every weight (norms) and bias (values), and the
    rewritten rows of every weight (directions)."""
    layers: list[dict[str, Any]] = []
    units: list[dict[str, Any]] = []
    rewritten: list[dict[str, Any]] = []
    for name, cand, ref in _pairs(cand_dir, ref_dir):
        if not (cand.is_floating_point() and ref.is_floating_point()):
            changed = not bool((cand == ref).all())
            layers.append({"tensor": name, "shape": list(cand.shape), "relative_change": 1.0 if changed else 0.0})
            continue
        layers.append(_layer_row(name, cand, ref))
        if cand.dim() >= 2 and cand.shape[0] > 1:
            rows_c, rows_r = cand.double().flatten(1).numpy(), ref.double().flatten(1).numpy()
            c, r = np.linalg.norm(rows_c, axis=1), np.linalg.norm(rows_r, axis=1)
            units += _unit_rows(name, "norm", c, r, threshold)
            rewritten += _rewrite_rows(name, rows_c, rows_r, *rewrite)
        elif cand.dim() == 1 and name.endswith("bias") and cand.shape[0] > 1:
            units += _unit_rows(name, "bias", cand.double().numpy(), ref.double().numpy(), threshold)
    return layers, units, rewritten


def _finite(value: float) -> float:
    return round(value, 6) if math.isfinite(value) else 1e300


def _reason(
    unexpected: list[str],
    outliers: list[dict[str, Any]],
    count: int,
    threshold: float,
    rewritten: list[dict[str, Any]],
    rewrite: tuple[float, float],
) -> str:
    parts = []
    if outliers:
        top = outliers[0]
        parts.append(
            f"{count} unit(s) moved more than {threshold:g} robust SDs of their layer "
            f"(largest: {top['tensor']} unit {top['unit']} {top['kind']}, z={top['z']:.1f})"
        )
    if rewritten:
        top = max(rewritten, key=lambda u: u["rewrite"])
        units = len({(u["layer"], u["unit"]) for u in rewritten})
        parts.append(
            f"{units} unit(s) rewritten: their weight row changed by more than {rewrite[0]:g} of its norm in a layer "
            f"whose rows changed {rewrite[1]:g} times less (largest: {top['tensor']} unit {top['unit']}, "
            f"{top['rewrite']:.2f} of its norm, norm {top['reference_norm']:.3g} -> {top['candidate_norm']:.3g})"
        )
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        parts.append(f"{len(unexpected)} tensor(s) changed outside expected_changed ({unexpected[0]}{more})")
    return "weight forensics: " + "; ".join(parts)


def forensics_rows(evidence: StageEvidence) -> list[dict[str, Any]]:
    """The per-tensor table of a forensics evidence for a Prefect table artifact (most changed first)."""
    rows = evidence.details.get("layers", [])
    columns: tuple[str, ...] = ("tensor", "shape", "relative_change", "cosine", "changed", "expected")
    ordered = sorted(rows, key=lambda r: -float(r.get("relative_change", 0.0)))
    return [{c: (str(r.get(c)) if c == "shape" else r.get(c)) for c in columns} for r in ordered]


__all__ = [
    "DEFAULT_FORENSICS_PARAMS",
    "FORENSICS",
    "architecture_mismatch",
    "forensics_params",
    "forensics_rows",
    "forensics_stage",
    "tensor_files",
    "tensor_specs",
    "unit_moves",
]
