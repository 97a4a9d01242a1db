"""The flat metrics and plot tables of one run: what ``dvc exp show``, ``dvc metrics diff`` and
``dvc plots`` read.

Only values that a re-run reproduces exactly are kept (no timings, no run ids), so
``modelgate audit reproduce`` can demand an exact match. Booleans become 1/0.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelgate.ledger.layout import EVIDENCE_FILES, METRICS_FILE, NOT_EVIDENCE, PLOTS_DIR
from modelgate.validation.evidence import load_run

Metric = int | float | str

ROBUSTNESS_PLOTS = {"linf": "robust_accuracy_linf.csv", "l2": "robust_accuracy_l2.csv"}
ROC_PLOT = "membership_roc.csv"  # LiRA on known members vs non-members (the membership stage)
AUDIT_ROC_PLOT = "privacy_roc.csv"  # candidate and reference after fine-tuning (the privacy-backdoor audit)


def _value(value: Any) -> Metric | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    return None


def _decision(folder: Path) -> dict[str, Metric]:
    path = folder / "decision.json"
    if not path.is_file():
        return {"decision.recorded": 0, "decision.approved": 0}
    data = json.loads(path.read_text(encoding="utf-8"))
    rules = data.get("rules") or []
    return {
        "decision.recorded": 1,
        "decision.approved": int(data.get("decision") == "approved"),
        "decision.failed_rules": sum(1 for r in rules if not r.get("passed") and not r.get("waived")),
        "decision.rejecting_rules": len(data.get("reasons") or []),
        "decision.warnings": len(data.get("warnings") or []),
        "decision.waivers_applied": len(data.get("waivers_applied") or []),
    }


def flat_metrics(folder: Path) -> dict[str, Metric]:
    """Every stage's metrics (lists as their length under ``<key>.count``), stage counts and the decision."""
    run = load_run(Path(folder))
    order = [s for s in EVIDENCE_FILES if s in run.stages] + sorted(
        s for s in run.stages if s not in EVIDENCE_FILES and s not in NOT_EVIDENCE
    )
    statuses = Counter(run.stages[s].status.value for s in order)
    out: dict[str, Metric] = {f"stages.{s}": statuses.get(s, 0) for s in ("pass", "fail", "error", "skipped")}
    for stage in [*order, "gate"]:
        evidence = run.get(stage)
        if evidence is None:
            continue
        for key, raw in sorted(evidence.metrics.items()):
            if isinstance(raw, list):
                out[f"{key}.count"] = len(raw)
            elif (value := _value(raw)) is not None:
                out[key] = value
    out.update(_decision(Path(folder)))
    return out


def _robustness_rows(folder: Path) -> list[tuple[str, float, float]]:
    """(norm, eps, robust accuracy) from the run's CSV, else from the adversarial evidence."""
    table = folder / "adversarial" / "robustness.csv"
    rows: list[tuple[str, float, float]] = []
    if table.is_file():
        for row in csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))):
            try:
                rows.append((row["norm"], float(row["eps"]), float(row["robust_accuracy"])))
            except (KeyError, TypeError, ValueError):
                continue
        return rows
    evidence = load_run(folder).get("adversarial")
    attacks = evidence.details.get("pgd", {}).get("attacks", []) if evidence is not None else []
    clean = evidence.metrics.get("adversarial.clean_accuracy") if evidence is not None else None
    norms = sorted({str(a.get("norm")) for a in attacks if isinstance(a, dict)})
    if isinstance(clean, (int, float)):
        rows += [(norm, 0.0, float(clean)) for norm in norms]
    rows += [(str(a["norm"]), float(a["eps"]), float(a["robust_accuracy"])) for a in attacks if isinstance(a, dict)]
    return rows


def write_plots(folder: Path) -> list[Path]:
    """``plots/robust_accuracy_<norm>.csv`` (eps, robust_accuracy), ``plots/membership_roc.csv`` (fpr, tpr)
    and ``plots/privacy_roc.csv`` (fpr, candidate, reference).

    Every file is always written (only a header when the evaluation did not run), so the DVC stage's
    outputs exist for every run.
    """
    folder = Path(folder)
    plots = folder / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    rows = _robustness_rows(folder)
    written = []
    for norm, name in ROBUSTNESS_PLOTS.items():
        points = sorted((eps, acc) for n, eps, acc in rows if n == norm)
        lines = ["eps,robust_accuracy"] + [f"{eps:g},{acc:.6f}" for eps, acc in points]
        (plots / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(plots / name)
    lira = _roc_rows(folder / "membership" / "roc.csv", "attack", "lira")
    (plots / ROC_PLOT).write_text(_csv(["fpr", "tpr"], lira), encoding="utf-8")
    written.append(plots / ROC_PLOT)
    audit = {side: _roc_rows(folder / "privacy" / "roc.csv", "model", side) for side in ("candidate", "reference")}
    grid = _on_grid(audit["candidate"], audit["reference"]) if all(audit.values()) else []
    (plots / AUDIT_ROC_PLOT).write_text(_csv(["fpr", "candidate", "reference"], grid), encoding="utf-8")
    written.append(plots / AUDIT_ROC_PLOT)
    return written


def _roc_rows(path: Path, column: str, value: str) -> list[tuple[float, float]]:
    """(fpr, tpr) of one curve of an evaluation's ROC table (``column`` names the curve)."""
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        try:
            if row.get(column) == value:
                rows.append((float(row["fpr"]), float(row["tpr"])))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(rows)


def _on_grid(*curves: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    """Every curve's TPR at each FPR of a shared grid (the best TPR with FPR at most the grid point)."""
    grid = sorted({fpr for curve in curves for fpr, _ in curve})
    return [(x, *(max((t for f, t in curve if f <= x + 1e-12), default=0.0) for curve in curves)) for x in grid]


def _csv(header: list[str], rows: Sequence[Sequence[float]]) -> str:
    return "\n".join([",".join(header), *(",".join(f"{v:.6g}" for v in row) for row in rows)]) + "\n"


def write_metrics(folder: Path) -> Path:
    """Write ``metrics.json`` (flat, sorted keys) and the plot tables into the evidence folder."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    path.write_text(json.dumps(flat_metrics(folder), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_plots(folder)
    return path
