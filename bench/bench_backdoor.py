"""Backdoor detection: batched Neural Cleanse vs the per-label schedule, and detection rates over a zoo.

1. Speed: on a few zoo models, modelgate's batched Neural Cleanse (all labels and seeds in one
   optimization) against the per-label schedule (one label and seed at a time, the same code, the
   same step budget and early stopping), run alternately; wall time, CPU time, passes, verdicts.
   TrojanZoo's Neural Cleanse is tried and, where it cannot run, the reason is printed.
2. Detection: the zoo of tests/helpers/zoo.py plus extra clean and backdoored models (patch and blended
   triggers, other positions and targets), with the params.yaml budget: Neural Cleanse's and
   MM-BD's detection rate (flagged with the right target) and false-positive rate.

Prints markdown tables and one JSON line.

    python bench/bench_backdoor.py [--threads 1] [--speed-models 3] [--extra-clean 8] [--zoo DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from modelgate.demo.cnn import load_model  # noqa: E402
from tasks.evaluate.backdoor import NeuralCleanseConfig, neural_cleanse, neural_cleanse_per_label  # noqa: E402
from tasks.evaluate.data import load_eval_data, per_class  # noqa: E402
from tasks.evaluate.mmbd import MMBDConfig, mmbd  # noqa: E402
from tasks.evaluate.stage import load_params  # noqa: E402
from tests.helpers.zoo import SPECS, Trigger, ZooModel, train_model  # noqa: E402

EXTRA_BACKDOORED: tuple[tuple[str, int, Trigger | None], ...] = (
    ("patch-white-bl-t4", 21, Trigger("patch", 4, row=12, col=1, size=3, pattern="white")),
    ("patch-checker-mid-t8", 22, Trigger("patch", 8, row=6, col=6, size=4, pattern="checker")),
    ("patch-white-small-t2", 23, Trigger("patch", 2, row=0, col=7, size=2, pattern="white")),
    ("blend-noise-t1", 24, Trigger("blend", 1, pattern="noise", alpha=0.2)),
    ("blend-stripes-t6", 25, Trigger("blend", 6, pattern="stripes", alpha=0.2)),
)


def build(out: Path, extra_clean: int) -> list[ZooModel]:
    """The test zoo, the extra backdoored models and ``extra_clean`` more clean seeds (cached in ``out``)."""
    specs = list(SPECS) + list(EXTRA_BACKDOORED) + [(f"clean-{s}", s, None) for s in range(5, 5 + extra_clean)]
    models = []
    for name, seed, trigger in specs:
        record = out / name / "zoo.json"
        if record.is_file():
            data = json.loads(record.read_text())
            data["path"] = Path(data["path"])
            data["trigger"] = Trigger(**data["trigger"]) if data["trigger"] else None
            models.append(ZooModel(**data))
        else:
            models.append(train_model(name, seed, trigger, out))
    return models


def timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def speed(models: list[ZooModel], x: torch.Tensor, config: NeuralCleanseConfig, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        net = load_model(model.path)
        runs: dict[str, list[tuple[Any, float, float]]] = {"batched": [], "per_label": []}
        for _ in range(repeats):  # alternate, so load from other processes hits both alike
            runs["batched"].append(timed(neural_cleanse, net, x, 10, config))
            runs["per_label"].append(timed(neural_cleanse_per_label, net, x, 10, config))
        batched, reference = runs["batched"][0][0], runs["per_label"][0][0]
        wall = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
        cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
        rows.append(
            {
                "model": model.name,
                "batched_s": round(wall["batched"], 2),
                "per_label_s": round(wall["per_label"], 2),
                "speedup_wall": round(wall["per_label"] / wall["batched"], 2),
                "batched_cpu_s": round(cpu["batched"], 2),
                "per_label_cpu_s": round(cpu["per_label"], 2),
                "speedup_cpu": round(cpu["per_label"] / cpu["batched"], 2),
                "passes": [batched.passes, reference.passes],
                "same_verdict": (batched.flagged, batched.suspect_label)
                == (reference.flagged, reference.suspect_label),
                "max_norm_diff": round(max(abs(a - b) for a, b in zip(batched.norms, reference.norms, strict=True)), 6),
                "anomaly_index": round(batched.anomaly_index, 2),
                "flagged": batched.flagged,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def trojanzoo_status() -> str:
    """Why TrojanZoo's Neural Cleanse can (not) run beside this torch."""
    try:
        import trojanvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        try:
            import torchvision  # noqa: F401
        except Exception as tv_exc:  # noqa: BLE001
            tv = f"torchvision does not import beside torch {torch.__version__} ({type(tv_exc).__name__})"
        else:
            tv = "torchvision imports"
        return f"not run: trojanvision (TrojanZoo's Neural Cleanse) does not import ({type(exc).__name__}); {tv}"
    return "trojanvision imports (comparison not implemented for this model format)"


def detection(models: list[ZooModel], x: torch.Tensor, nc: NeuralCleanseConfig, mm: MMBDConfig) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        net = load_model(model.path)
        result = neural_cleanse(net, x, 10, nc)
        second = mmbd(net, 10, (1, 16, 16), mm)
        target = model.trigger.target if model.trigger else None
        rows.append(
            {
                "model": model.name,
                "target": target,
                "clean_acc": model.clean_accuracy,
                "attack_success": model.attack_success,
                "nc_index": round(result.anomaly_index, 2),
                "nc_suspect": result.suspect_label,
                "nc_flagged": result.flagged,
                "nc_correct": result.flagged == (target is not None)
                and (target is None or result.suspect_label == target),
                "mmbd_p": round(second.p_value, 4),
                "mmbd_suspect": second.suspect_label,
                "mmbd_flagged": second.flagged,
                "mmbd_correct": second.flagged == (target is not None)
                and (target is None or second.suspect_label == target),
                "nc_s": round(result.seconds, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def rates(rows: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    bad = [r for r in rows if r["target"] is not None]
    clean = [r for r in rows if r["target"] is None]
    hits = sum(r[f"{prefix}_flagged"] and r[f"{prefix}_suspect"] == r["target"] for r in bad)
    false = sum(r[f"{prefix}_flagged"] for r in clean)
    return {"detection": f"{hits}/{len(bad)}", "false_positives": f"{false}/{len(clean)}"}


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-models", type=int, default=3, help="zoo models timed batched vs per-label")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--extra-clean", type=int, default=8)
    parser.add_argument("--zoo", type=Path, default=Path("bench/out/zoo"))
    parser.add_argument("--skip-detection", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params()
    nc_params = params["neural_cleanse"]
    config = NeuralCleanseConfig.from_params(nc_params)
    args.zoo.mkdir(parents=True, exist_ok=True)
    models = build(args.zoo, args.extra_clean)
    data = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    x = per_class(data, int(nc_params["samples_per_class"]), int(nc_params["sample_seed"])).x
    picked = [m for m in models if m.name in ("clean-1", "patch-white-br-t0", "blend-noise-t5")][: args.speed_models]
    speed_rows = speed(picked, x, config, args.repeats)
    tz = trojanzoo_status()
    det_rows = [] if args.skip_detection else detection(models, x, config, MMBDConfig.from_params(params["mmbd"]))
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    print(f"\n## Neural Cleanse: batched vs per-label ({datetime.now(UTC):%Y-%m-%d}, {machine})\n")
    print(f"budget: {config.epochs} epochs, {len(x)} images, batch {config.batch_size}, seeds {list(config.seeds)}\n")
    print(table(speed_rows))
    print(f"\nTrojanZoo: {tz}")
    if det_rows:
        print("\n## Detection over the zoo\n")
        print(table(det_rows))
        print(f"\nNeural Cleanse: {rates(det_rows, 'nc')}; MM-BD: {rates(det_rows, 'mmbd')}")
    summary = {
        "speed": speed_rows,
        "trojanzoo": tz,
        "neural_cleanse": rates(det_rows, "nc") if det_rows else None,
        "mmbd": rates(det_rows, "mmbd") if det_rows else None,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
