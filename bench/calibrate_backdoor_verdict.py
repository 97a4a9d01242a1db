"""Calibrate the backdoor verdict's levels on clean models (issue 17), from a family benchmark's record.

Reads the newest record of ``bench/out/backdoor_families.jsonl`` (bench_backdoor_families.py keeps
every model's Neural Cleanse norms and MM-BD margins), takes the **clean** models only, and fits a
Gumbel distribution to each detector's most extreme statistic per model (Neural Cleanse's largest
anomaly index; MM-BD's smallest step-down p-value, as -log10 p). The levels are quantiles of those
fits: ``--alone`` (0.99) for a detector on its own, ``--agree`` (0.90) for the two agreeing on a
label. It prints the levels for ``params.yaml`` (``evaluate.verdict``), then the verdict at those
levels over every model of the record: false positives among the clean models (in-sample, and
leave-one-out: each clean model judged by levels fitted without it) and detection per family.

    python bench/calibrate_backdoor_verdict.py [--alone 0.99] [--agree 0.90] [--record -1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tasks.evaluate.backdoor import mad_anomaly  # noqa: E402
from tasks.evaluate.backdoor_verdict import VerdictConfig, target_rules  # noqa: E402
from tasks.evaluate.mmbd import step_down  # noqa: E402

RECORDS = ROOT / "bench" / "out" / "backdoor_families.jsonl"


def statistics(row: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per-label Neural Cleanse indices and MM-BD's step p-values, recomputed from the record's figures."""
    per_label, _, _ = mad_anomaly(row["nc_norms"])
    return per_label, step_down(row["margins"])


def levels(clean: list[dict[str, Any]], alone: float, agree: float) -> VerdictConfig:
    from scipy import stats

    nc = [max(statistics(r)[0]) for r in clean]
    mm = [-np.log10(max(min(statistics(r)[1]), 1e-300)) for r in clean]
    nc_fit, mm_fit = stats.gumbel_r.fit(nc), stats.gumbel_r.fit(mm)
    return VerdictConfig(
        nc_alone=float(stats.gumbel_r.ppf(alone, *nc_fit)),
        mmbd_alone=float(10 ** -stats.gumbel_r.ppf(alone, *mm_fit)),
        nc_agree=float(stats.gumbel_r.ppf(agree, *nc_fit)),
        mmbd_agree=float(10 ** -stats.gumbel_r.ppf(agree, *mm_fit)),
    )


def targets(row: dict[str, Any], cfg: VerdictConfig) -> list[int]:
    """The verdict's own rule on a record's figures."""
    per_label, steps = statistics(row)
    return sorted(target_rules(per_label, row["margins"], steps, cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alone", type=float, default=0.99)
    parser.add_argument("--agree", type=float, default=0.90)
    parser.add_argument("--record", type=int, default=-1, help="which record of the jsonl (default: newest)")
    args = parser.parse_args()
    record = json.loads(RECORDS.read_text(encoding="utf-8").splitlines()[args.record])
    rows = [r for r in record["rows"] if r["valid"] and "nc_norms" in r]
    clean = [r for r in rows if r["family"] == "clean"]
    cfg = levels(clean, args.alone, args.agree)
    print(f"record {record['when']}: {len(clean)} clean models, {len(rows) - len(clean)} valid backdoored")
    print("levels:", json.dumps({k: round(v, 6) for k, v in cfg.to_dict().items()}))
    flagged = [r["model"] for r in clean if targets(r, cfg)]
    others = [levels(clean[:i] + clean[i + 1 :], args.alone, args.agree) for i in range(len(clean))]
    held_out = [r["model"] for r, fitted in zip(clean, others, strict=True) if targets(r, fitted)]
    print(f"false positives: {len(flagged)}/{len(clean)} in-sample {flagged}")
    print(f"false positives: {len(held_out)}/{len(clean)} leave-one-out {held_out}")
    families = sorted({r["family"] for r in rows} - {"clean"})
    for name in families:
        group = [r for r in rows if r["family"] == name]
        right = sum(bool(set(targets(r, cfg)) & (set(r["targets"]) or set(range(10)))) for r in group)
        every = sum(bool(r["targets"]) and set(r["targets"]) <= set(targets(r, cfg)) for r in group)
        print(f"  {name}: {right}/{len(group)} flagged with a right target, {every}/{len(group)} with every target")


if __name__ == "__main__":
    main()
