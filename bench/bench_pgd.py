"""PGD throughput and agreement: modelgate's batched PGD vs torchattacks and ART on the same model and data.

The demo digits CNN (seed 0) on the 450 held-out digits, at params.yaml's epsilons, steps and
relative step size, one restart for every tool (same random-start distribution). Runs alternate
between tools; the median of ``--repeats`` runs is reported as images per second (the whole
attack), with each tool's robust accuracy. Peers come from ``.venv-peers-eval/site``
(bench/requirements-peers-eval.txt). Prints a markdown table and one JSON line.

    python bench/bench_pgd.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEERS = ROOT / ".venv-peers-eval" / "site"
if PEERS.is_dir():
    sys.path.append(str(PEERS))

import torch  # noqa: E402

from modelgate.demo.build import train_digits_cnn  # noqa: E402
from tasks.evaluate.adversarial import PGDConfig, pgd  # noqa: E402
from tasks.evaluate.data import load_eval_data  # noqa: E402
from tasks.evaluate.stage import load_params  # noqa: E402

Attack = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, str, float, float, int], torch.Tensor]


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, alpha: float, steps: int):
    _, robust = pgd(model, x, y, PGDConfig(norm, eps, steps, alpha, restarts=1, batch_size=len(y)))
    return float(robust.float().mean())


def torchattacks_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, alpha: float,
                     steps: int) -> float:  # fmt: skip
    import torchattacks

    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    return accuracy(model, cls(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y), y)


def art_pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, alpha: float,
            steps: int) -> float:  # fmt: skip
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0.0, 1.0)
    )
    attack = ProjectedGradientDescentPyTorch(
        classifier, norm=float("inf") if norm == "linf" else 2, eps=eps, eps_step=alpha, max_iter=steps,
        num_random_init=1, batch_size=len(y), verbose=False,
    )  # fmt: skip
    return accuracy(model, torch.from_numpy(attack.generate(x.numpy(), y=y.numpy())), y)


def available() -> dict[str, Any]:
    tools: dict[str, Any] = {"modelgate": ours}
    for name, module, fn in (("torchattacks", "torchattacks", torchattacks_pgd), ("ART", "art", art_pgd)):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
            print(f"{name} not available: {type(exc).__name__}: {exc}")
        else:
            tools[name] = fn
    return tools


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pgd_params = load_params()["pgd"]
    steps, relative = int(pgd_params["steps"]), float(pgd_params["relative_step_size"])
    model, _ = train_digits_cnn(0)
    model.eval()
    data = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    x, y = data.x, data.y
    tools = available()
    rows = []
    for norm in ("linf", "l2"):
        for eps in pgd_params["epsilons"].get(norm, []):
            alpha = relative * float(eps)
            for fn in tools.values():  # warm-up: first-call allocations and imports
                fn(model, x[:32], y[:32], norm, float(eps), alpha, 2)
            times: dict[str, list[float]] = {name: [] for name in tools}
            robust: dict[str, float] = {}
            for repeat in range(args.repeats):
                for name, fn in tools.items():
                    torch.manual_seed(repeat)
                    start = time.perf_counter()
                    robust[name] = fn(model, x, y, norm, float(eps), alpha, steps)
                    times[name].append(time.perf_counter() - start)
            row: dict[str, Any] = {"norm": norm, "eps": eps, "steps": steps}
            for name in tools:
                row[f"{name} img/s"] = round(len(y) / statistics.median(times[name]))
                row[f"{name} robust acc"] = round(robust[name], 4)
            base = row["modelgate img/s"]
            for name in tools:
                if name != "modelgate":
                    row[f"x {name}"] = round(base / row[f"{name} img/s"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = list(rows[0])
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    print(
        f"\n## PGD ({datetime.now(UTC):%Y-%m-%d}, {machine}, {len(y)} images, clean acc {accuracy(model, x, y):.4f})\n"
    )
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    print(json.dumps({"pgd": rows, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
