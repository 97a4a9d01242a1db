"""Neural Cleanse's label schedule against the all-labels schedule as the classes grow (issue 17).

Same run, same inputs, same budget: the all-labels schedule (every label to the end of the
budget or its own early stop) against the K-Arm-style successive halving (params.yaml's
``prune_every``, ``null_labels``, ``keep_labels``). Heads:

* a 100-class two-digit CNN (tests/helpers/many_classes.py), backdoored (a 4x4 patch to label 37)
  and clean: the verdicts must agree, target included;
* a 1,000-class random-weight CNN on random images: timing only (random weights are what the
  issue allows), on its own smaller budget (``--head-epochs``, ``--head-images``).

The budget is smaller than params.yaml's so that both schedules run on a 2-core CPU in minutes
(``--epochs``, one seed, ``--per-class`` images per class); it is the same for both. Reported:
wall time, row-steps (optimization steps summed over the labels: the work, whatever the device),
the ratios, and each verdict.

    python bench/bench_backdoor_classes.py [--epochs 40] [--per-class 3] [--threads 2] [--heads 100,1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.records import append_record  # noqa: E402
from tasks.evaluate.backdoor import NeuralCleanseConfig, NeuralCleanseResult, neural_cleanse  # noqa: E402
from tests.helpers import many_classes  # noqa: E402

OUT = ROOT / "bench" / "out" / "backdoor_classes.jsonl"
ALL_LABELS = 10**9  # prune_above_classes that no head reaches: the all-labels schedule
SCHEDULES = (("all labels", ALL_LABELS), ("label schedule", 32))


def compare(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    classes: int,
    config: NeuralCleanseConfig,
    schedules: tuple[tuple[str, int], ...] = SCHEDULES,
) -> dict[str, Any]:
    runs: dict[str, tuple[NeuralCleanseResult, float]] = {}
    for schedule, above in schedules:
        start = time.perf_counter()
        result = neural_cleanse(model, x, classes, dataclasses.replace(config, prune_above_classes=above))
        runs[schedule] = (result, time.perf_counter() - start)
        print(f"{name}: {schedule} {runs[schedule][1]:.1f} s", file=sys.stderr, flush=True)
    if len(runs) < 2:
        only, seconds = next(iter(runs.values()))
        return {
            "head": name,
            "classes": classes,
            "schedule": next(iter(runs)),
            "s": round(seconds, 1),
            "row_steps": only.row_steps,
            "pruned_labels": len(only.pruned_labels),
            "verdict": _verdict(only),
        }
    (full, full_s), (pruned, pruned_s) = runs["all labels"], runs["label schedule"]
    return {
        "head": name,
        "classes": classes,
        "samples": len(x),
        "all_s": round(full_s, 1),
        "schedule_s": round(pruned_s, 1),
        "time_ratio": round(full_s / pruned_s, 2),
        "all_row_steps": full.row_steps,
        "schedule_row_steps": pruned.row_steps,
        "work_ratio": round(full.row_steps / pruned.row_steps, 2),
        "pruned_labels": len(pruned.pruned_labels),
        "all_verdict": _verdict(full),
        "schedule_verdict": _verdict(pruned),
        "verdicts_agree": _verdict(full)[:2] == _verdict(pruned)[:2]
        and full.suspect_labels[:1] == pruned.suspect_labels[:1],
    }


def _verdict(result: NeuralCleanseResult) -> tuple[bool, int, float, list[int]]:
    return result.flagged, result.suspect_label, round(result.anomaly_index, 2), result.suspect_labels[:5]


def per_class(x: torch.Tensor, y: torch.Tensor, classes: int, count: int) -> torch.Tensor:
    return x[torch.cat([torch.nonzero(y == c).flatten()[:count] for c in range(classes)])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heads", default="100,1000", help="which heads: 100 (trained, verdicts), 1000 (timing)")
    parser.add_argument("--head-epochs", type=int, default=20, help="the 1000-class head's budget (both schedules)")
    parser.add_argument("--head-images", type=int, default=320, help="random images for the 1000-class head")
    parser.add_argument("--only-schedule", action="store_true", help="run the label schedule alone (a rerun)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    schedules = SCHEDULES[1:] if args.only_schedule else SCHEDULES
    config = NeuralCleanseConfig(epochs=args.epochs, seeds=(0,))
    rows = []
    heads = set(args.heads.split(","))
    test_x, test_y = many_classes.pair_digits(4000, 5, test=True)
    x = per_class(test_x, test_y, 100, args.per_class)
    trained_heads = (("100-class backdoored (patch -> 37)", 37, 0), ("100-class clean", None, 1))
    for name, target, seed in trained_heads if "100" in heads else ():
        start = time.perf_counter()
        trained = many_classes.train_pairs(seed, target)
        print(f"{name}: trained in {time.perf_counter() - start:.0f} s, clean accuracy {trained.clean_accuracy}, "
              f"attack success {trained.attack_success}", file=sys.stderr, flush=True)  # fmt: skip
        row = compare(name, trained.model, x, 100, config, schedules)
        row.update(clean_accuracy=trained.clean_accuracy, attack_success=trained.attack_success)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if "1000" in heads:
        head = many_classes.random_head(1000)
        images = torch.rand(args.head_images, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        head_config = dataclasses.replace(config, epochs=args.head_epochs)
        rows.append(compare("1000-class random head (timing)", head, images, 1000, head_config, schedules))
        print(json.dumps(rows[-1]), flush=True)
    budget = {"epochs": args.epochs, "per_class": args.per_class, "seeds": [0]}
    append_record(OUT, "backdoor_classes", rows, budget=budget)


if __name__ == "__main__":
    main()
