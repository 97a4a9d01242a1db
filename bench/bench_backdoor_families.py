"""Measure first (issue 17): today's backdoor detectors on the trigger families Neural Cleanse is known to miss.

For each family of tests/helpers/backdoor_families.py it trains ``--per-family`` models (seeds), plus
``--clean`` clean models, the architectures taken in turn (the demo CNN, a wider and a deeper one, a
tiny Hugging Face ResNet), runs the backdoor stage with the default parameters (params.yaml: Neural
Cleanse batched over all labels, MM-BD) and reports per family: how many valid models (clean
accuracy and attack success >= 0.9) each detector flags with a right target, the false positives on
the clean models, and each detector's AUROC (score: Neural Cleanse's anomaly index, MM-BD's
-log10 p) over valid backdoored vs clean models. Each detector's suspect labels (every label Neural
Cleanse puts above its threshold, MM-BD's step-down test) are listed, and a two-target model counts
as found only when both its targets are named.

    python bench/bench_backdoor_families.py [--per-family 1] [--clean 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.records import append_record  # noqa: E402
from tasks.evaluate.privacy.metrics import roc_curve  # noqa: E402
from tasks.evaluate.stage import backdoor_stage  # noqa: E402
from tests.helpers import backdoor_families as families  # noqa: E402

OUT = ROOT / "bench" / "out" / "backdoor_families.jsonl"


def measure(per_family: int, clean: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    specs: list[tuple[str, families.Backdoor | None, int, str]] = []
    archs = families.ARCHITECTURES
    for f, name in enumerate(families.FAMILIES):
        for i in range(per_family):
            specs.append((f"{name}-{i}", families.family(name, (3 * f + i) % 10), 100 + 10 * f + i, archs[(f + i) % 4]))
    specs += [(f"clean-{i}", None, 1000 + i, archs[i % 4]) for i in range(clean)]
    with tempfile.TemporaryDirectory(prefix="modelgate-bench-families-") as tmp:
        for name, backdoor, seed, arch in specs:
            start = time.perf_counter()
            model = families.train_backdoored(name, backdoor, seed, Path(tmp), arch)
            trained = time.perf_counter() - start
            evidence = backdoor_stage(model.path, "sklearn:digits", None, Path(tmp) / f"out-{name}")
            m = evidence.metrics
            nc_label, mm_label = m.get("backdoor.suspect_label"), m.get("backdoor.mmbd_suspect_label")
            right = set(model.targets) if model.targets else set(range(10))  # all-to-all: every label is one
            p_value = float(m.get("backdoor.mmbd_p_value", 1.0))
            nc_all, mm_all = m.get("backdoor.suspect_labels", []), m.get("backdoor.mmbd_suspect_labels", [])
            rows.append(
                {
                    "model": name,
                    "arch": arch,
                    "family": model.family,
                    "targets": list(model.targets),
                    "clean_accuracy": model.clean_accuracy,
                    "attack_success": list(model.attack_success),
                    "valid": model.valid,
                    "nc_index": m.get("backdoor.anomaly_index"),
                    "nc_label": nc_label,
                    "nc_flagged": bool(m.get("backdoor.flagged")),
                    "nc_right": bool(m.get("backdoor.flagged")) and nc_label in right,
                    "mmbd_p": p_value,
                    "mmbd_label": mm_label,
                    "mmbd_flagged": bool(m.get("backdoor.mmbd_flagged")),
                    "mmbd_right": bool(m.get("backdoor.mmbd_flagged")) and mm_label in right,
                    "verdict_flagged": bool(m.get("backdoor.verdict_flagged")),
                    "verdict_targets": m.get("backdoor.targets", []),
                    "verdict_right": _verdict_right(m.get("backdoor.targets", []), model.targets),
                    "nc_norms": [r["l1_norm"] for r in evidence.details["neural_cleanse"]["norms"]],
                    "margins": evidence.details["mmbd"]["margins"],
                    "nc_suspects": nc_all,
                    "mmbd_suspects": mm_all,
                    "nc_all_targets": _names_all(nc_all, model.targets),
                    "mmbd_all_targets": _names_all(mm_all, model.targets),
                    "train_s": round(trained, 2),
                    "detect_s": round(time.perf_counter() - start - trained, 2),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _verdict_right(found: list[int], targets: tuple[int, ...]) -> bool:
    """The verdict flags the model and names a real target (all-to-all: any label)."""
    return bool(found) and (not targets or bool(set(found) & set(targets)))


def _names_all(suspects: list[int], targets: tuple[int, ...]) -> bool:
    """Every target named (all-to-all: some label named), no target-less model counts."""
    if not targets:
        return bool(suspects)
    return set(targets) <= set(suspects)


def auroc(rows: list[dict[str, Any]], score: str) -> float:
    """AUROC of a detector's score: valid backdoored models (positives) against clean ones."""
    chosen = [r for r in rows if r["valid"]]
    values = np.array([_score(r, score) for r in chosen])
    positive = np.array([r["family"] != "clean" for r in chosen])
    if positive.all() or not positive.any():
        return math.nan
    return roc_curve(values, positive).auc


def _score(row: dict[str, Any], score: str) -> float:
    if score == "nc":
        return float(row["nc_index"] or 0.0)
    return -math.log10(max(float(row["mmbd_p"]), 1e-300))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | arch | targets | clean acc | attack success | valid | NC index (label) | NC right "
        "| NC suspects | MM-BD p (label) | MM-BD right | MM-BD suspects | verdict targets | verdict right |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['targets'] or '-'} | {r['clean_accuracy']} "
            f"| {r['attack_success'] or '-'} | {'yes' if r['valid'] else 'no'} | {r['nc_index']:.2f} ({r['nc_label']}) "
            f"| {_mark(r, 'nc')} | {r['nc_suspects'] or '-'} | {r['mmbd_p']:.2g} ({r['mmbd_label']}) "
            f"| {_mark(r, 'mmbd')} | {r['mmbd_suspects'] or '-'} | {r['verdict_targets'] or '-'} "
            f"| {_mark(r, 'verdict')} |"
        )
    lines += [
        "",
        "| family | valid models | NC: flagged, right target | MM-BD: flagged, right target | either "
        "| NC: every target named | MM-BD: every target named | **verdict** (calibrated) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in [*families.FAMILIES, "clean"]:
        group = [r for r in rows if r["family"] == name and r["valid"]]
        if not group:
            lines.append(f"| {name} | 0 | - | - | - | - | - | - |")
            continue
        key = "flagged" if name == "clean" else "right"
        nc = sum(r[f"nc_{key}"] for r in group)
        mm = sum(r[f"mmbd_{key}"] for r in group)
        either = sum(r[f"nc_{key}"] or r[f"mmbd_{key}"] for r in group)
        every_nc = "-" if name == "clean" else str(sum(r["nc_all_targets"] for r in group))
        every_mm = "-" if name == "clean" else str(sum(r["mmbd_all_targets"] for r in group))
        verdict = sum(r[f"verdict_{key}"] for r in group)
        lines.append(f"| {name} | {len(group)} | {nc} | {mm} | {either} | {every_nc} | {every_mm} | {verdict} |")
    lines += ["", f"AUROC (valid backdoored vs clean): NC {auroc(rows, 'nc'):.3f}, MM-BD {auroc(rows, 'mmbd'):.3f}"]
    return "\n".join(lines)


def _mark(row: dict[str, Any], detector: str) -> str:
    if row["family"] == "clean":
        return "**FP**" if row[f"{detector}_flagged"] else "-"
    return "yes" if row[f"{detector}_right"] else ("wrong label" if row[f"{detector}_flagged"] else "no")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-family", type=int, default=1, help="backdoored models per family (seeds)")
    parser.add_argument("--clean", type=int, default=4, help="clean models (seeds)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.per_family, args.clean)
    print(table(rows))
    append_record(OUT, "backdoor_families", rows)


if __name__ == "__main__":
    main()
