"""What the privacy-backdoor audit costs: wall time and amplification interval width against k and canary count.

Models: the test zoo's wide digits CNN (tests/helpers/privacy_zoo.py, 1024 hidden units, ~0.6 M
parameters): the reference and the poisoned candidate built from it. Canaries: mislabeled digits
drawn from all 1,797 sklearn digits (the held-out 450 alone allow only 270 distinct canaries; the
rest were in the reference's training split, which changes nothing for a wrong-labelled record),
10% fine-tune and 10% held-out data, so at most 1,437 canaries. Recipes: the default (Adam,
100 steps of 64, all layers, canary share 0.25) and the same on the head only (the fast path:
the frozen body runs once). Also: the same k=8 fine-tunes of the reference batched (one vmap) and one by one.
Prints a markdown table per part and one JSON line.

    python bench/bench_audit.py [--threads 1] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modelgate.demo.build import IMAGE_SIDE  # noqa: E402
from tasks.evaluate.data import EvalData  # noqa: E402
from tasks.evaluate.device import select_device  # noqa: E402
from tasks.evaluate.privacy.audit import DEFAULT_AUDIT_PARAMS, member_masks, run_audit  # noqa: E402
from tasks.evaluate.privacy.finetune import ClassifierCanaryTrainer, Recipe, make_image_canaries  # noqa: E402
from tests.helpers.privacy_zoo import poisoned_candidate, train_reference  # noqa: E402

KS = (1, 2, 4, 8)
CANARIES = (250, 500, 1000, 1400)


def all_digits() -> EvalData:
    import torch.nn.functional as F  # noqa: N812
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(IMAGE_SIDE, IMAGE_SIDE), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    return EvalData(x, torch.tensor(digits.target), 10, "sklearn:digits (all 1797)", "builtin")


def trainers(
    models: dict[str, Path], data: EvalData, count: int, recipe: Recipe, device: torch.device
) -> tuple[ClassifierCanaryTrainer, ClassifierCanaryTrainer]:
    split = make_image_canaries(data, count, seed=0, held_out_fraction=0.1, fine_tune_fraction=0.1)
    args = (split.canaries_x, split.canaries_y, split.fine_tune_x, split.fine_tune_y)
    args += (split.held_out_x, split.held_out_y)
    return (
        ClassifierCanaryTrainer(models["poisoned"], *args, recipe, device),
        ClassifierCanaryTrainer(models["reference"], *args, recipe, device),
    )


def audit_row(models: dict[str, Path], data: EvalData, k: int, count: int, layers: str, device: torch.device) -> dict:
    recipe = Recipe.from_params({**DEFAULT_AUDIT_PARAMS["recipe"], "layers": layers})
    start = time.perf_counter()
    candidate, reference = trainers(models, data, count, recipe, device)
    setup = time.perf_counter() - start
    result = run_audit(candidate, reference, k=k, seed=0, bootstrap=int(DEFAULT_AUDIT_PARAMS["bootstrap"]))
    amp = result.amplification
    row = {
        "layers": layers,
        "k": k,
        "canaries": candidate.canary_count(),
        "records": k * candidate.canary_count(),
        "finetune_s": round(candidate.seconds + reference.seconds, 2),
        "audit_s": round(setup + result.seconds, 2),
        "candidate_tpr": round(result.candidate.tpr[0.01].value, 3),
        "reference_tpr": round(result.reference.tpr[0.01].value, 3),
        "amplification": round(amp.value, 3),
        "ci": f"[{amp.low:.3f}, {amp.high:.3f}]",
        "ci_width": round(amp.high - amp.low, 3),
        "flagged": result.flagged(float(DEFAULT_AUDIT_PARAMS["margin"])),
    }
    print(json.dumps(row), flush=True)
    return row


def batched_vs_sequential(models: dict[str, Path], data: EvalData, device: torch.device, k: int = 8) -> list[dict]:
    rows = []
    masks = member_masks(k, 1000, seed=0)
    scores: dict[int, np.ndarray] = {}
    for parallel in (k, 1):
        recipe = Recipe.from_params({**DEFAULT_AUDIT_PARAMS["recipe"], "parallel": parallel})
        _, trainer = trainers(models, data, 1000, recipe, device)  # the reference: a stable fine-tune to compare
        trainer.loss_before()
        start, cpu = time.perf_counter(), time.process_time()
        scores[parallel], _ = trainer.finetune_and_score_many(masks[:, : trainer.canary_count()], list(range(k)))
        rows.append(
            {
                "fine-tuning": "batched (vmap)" if parallel > 1 else "one at a time",
                "copies": k,
                "wall_s": round(time.perf_counter() - start, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    rows[0]["max_score_difference"] = f"{np.abs(scores[k] - scores[1]).max():.1e}"
    return rows


def table(title: str, rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    print(f"\n{title}\n\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="k in (1, 4) and canaries in (250, 1000) only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    ks, counts = ((1, 4), (250, 1000)) if args.quick else (KS, CANARIES)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        start = time.perf_counter()
        reference = train_reference(Path(tmp) / "reference")
        models = {"reference": reference, "poisoned": poisoned_candidate(reference, Path(tmp) / "poisoned")}
        build_s = time.perf_counter() - start
        data = all_digits()
        head = [audit_row(models, data, k, n, "last", device) for k in ks for n in counts]
        full_k = [audit_row(models, data, k, 1000, "all", device) for k in ks]
        full_n = [audit_row(models, data, 4, n, "all", device) for n in counts if n != 1000]
        batching = batched_vs_sequential(models, data, device)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), {device}"
    print(f"\n## Privacy-backdoor audit ({datetime.now(UTC):%Y-%m-%d}, {machine}; models built in {build_s:.1f} s)")
    table("Head-only recipe (fast path)", head)
    table("Default recipe (all layers)", full_k + full_n)
    table("k = 8 fine-tunes of one model, 1000 canaries, all layers", batching)
    print(json.dumps({"head": head, "all": full_k + full_n, "batching": batching, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
