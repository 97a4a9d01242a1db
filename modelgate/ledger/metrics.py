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
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from modelgate.ledger.layout import EVIDENCE_FILES, METRICS_FILE, NOT_EVIDENCE, PLOTS_DIR
from modelgate.validation.evidence import load_run

Metric = int | float | str

ROBUSTNESS_PLOTS = {"linf": "robust_accuracy_linf.csv", "l2": "robust_accuracy_l2.csv"}
ROC_PLOT = "membership_roc.csv"
ROC_SOURCES = ("membership/roc.csv", "privacy/roc.csv", "privacy/membership_roc.csv")


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
    """``plots/robust_accuracy_<norm>.csv`` (eps, robust_accuracy) and ``plots/membership_roc.csv`` (fpr, tpr).

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
    roc = next((folder / p for p in ROC_SOURCES if (folder / p).is_file()), None)
    if roc is not None:
        shutil.copyfile(roc, plots / ROC_PLOT)
    else:
        (plots / ROC_PLOT).write_text("fpr,tpr\n", encoding="utf-8")
    written.append(plots / ROC_PLOT)
    return written


def write_metrics(folder: Path) -> Path:
    """Write ``metrics.json`` (flat, sorted keys) and the plot tables into the evidence folder."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    path.write_text(json.dumps(flat_metrics(folder), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_plots(folder)
    return path
