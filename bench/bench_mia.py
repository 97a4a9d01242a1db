"""Membership inference: modelgate's LOSS and offline LiRA vs ART's MembershipInferenceBlackBox, same split.

Three targets with the demo's architecture: the demo digits CNN (seed 0; members: its 1,347
training digits, non-members: the 450 held-out ones) and two overfit ones (60 epochs, no weight
decay, on the first 200 or 400 training digits; non-members: all the other digits). Each side
(members, non-members) is split in half with a fixed seed: the *attack half* is what an attacker
may learn from (ART fits its attack model on its members and non-members; our LiRA trains its
reference models on its non-members only; LOSS needs nothing), the *challenge half* is where every
attack is scored: the same records, the same figures (AUC, TPR at 1% and 0.1% FPR with bootstrap
intervals). Wall time covers everything an attack does (reference-model training, attack-model
fitting, queries). Also: class inversion vs ART's MIFace on the demo CNN (same start, same step
budget). ML Privacy Meter is reported, not run, when it does not import. One torch thread (fastest
on the shared 2-core VM, and reproducible).

    python bench/bench_mia.py [--threads 1] [--reference-models 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modelgate.demo.build import (  # noqa: E402
    BATCH_SIZE,
    LEARNING_RATE,
    _config,
    _reproducible,
    digits_dataset,
    train_digits_cnn,
)
from modelgate.demo.cnn import build_model  # noqa: E402
from tasks.evaluate.device import select_device  # noqa: E402
from tasks.evaluate.privacy.inversion import InversionConfig, centred_similarity, class_confidence, invert  # noqa: E402
from tasks.evaluate.privacy.metrics import attack_figures  # noqa: E402
from tasks.evaluate.privacy.mia import (  # noqa: E402
    DEFAULT_MEMBERSHIP_PARAMS,
    LiraConfig,
    balanced_assignment,
    lira_offline,
    logits_of,
    loss_scores,
    reference_logits,
    train_reference_models,
)

Target = tuple[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray]


def overfit_target(records: int, epochs: int = 60) -> Target:
    """A CNN trained on ``records`` training digits with no weight decay; all other digits are non-members."""
    data = digits_dataset(0)
    x = torch.cat([data.train_x, data.test_x])
    y = torch.cat([data.train_y, data.test_y])
    member = np.zeros(len(y), bool)
    member[:records] = True
    generator = torch.Generator().manual_seed(0)
    with _reproducible(0):
        model = build_model(_config(data, 0, epochs))
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(records, generator=generator).split(BATCH_SIZE):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    return model.eval(), x, y, member


def demo_target() -> Target:
    model, _ = train_digits_cnn(0)
    data = digits_dataset(0)
    member = np.r_[np.ones(len(data.train_y), bool), np.zeros(len(data.test_y), bool)]
    return model.eval(), torch.cat([data.train_x, data.test_x]), torch.cat([data.train_y, data.test_y]), member


def halves(member: np.ndarray, seed: int = 0) -> np.ndarray:
    """True for the attack half of each side (members, non-members), False for the challenge half."""
    rng = np.random.default_rng(seed)
    attack = np.zeros(len(member), bool)
    for side in (member, ~member):
        index = np.flatnonzero(side)
        attack[rng.permutation(index)[: len(index) // 2]] = True
    return attack


def ours_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, member: np.ndarray, attack: np.ndarray,
              params: dict[str, Any]) -> np.ndarray:  # fmt: skip
    challenge = torch.from_numpy(~attack)
    return loss_scores(logits_of(model, x[challenge]), y[challenge])


def ours_lira(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, member: np.ndarray, attack: np.ndarray,
              params: dict[str, Any]) -> np.ndarray:  # fmt: skip
    """Reference models train on the attack half's non-members; the challenge records are OUT for all of them."""
    pool = attack & ~member
    use = pool | ~attack
    index = torch.from_numpy(np.flatnonzero(use))
    result = lira_offline(model, x[index], y[index], pool[use], LiraConfig.from_params(params))
    return result.scores[~attack[use]]


def art_blackbox(kind: str) -> Callable[..., np.ndarray]:
    def run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, member: np.ndarray, attack: np.ndarray,
            params: dict[str, Any]) -> np.ndarray:  # fmt: skip
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
            clip_values=(0.0, 1.0),
        )  # fmt: skip
        xs, ys = x.numpy(), y.numpy()
        fit_in, fit_out = attack & member, attack & ~member
        mia = MembershipInferenceBlackBox(classifier, input_type="prediction", attack_model_type=kind)
        mia.fit(x=xs[fit_in], y=ys[fit_in], test_x=xs[fit_out], test_y=ys[fit_out])
        scores = mia.infer(xs[~attack], ys[~attack], probabilities=True)
        return np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)[:, -1]

    return run


def privacy_meter_status() -> str:
    try:
        import privacy_meter.model  # noqa: F401  (imports tensorflow and opacus at module level)
    except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
        return f"not run: {type(exc).__name__}: {exc}"
    return "importable (not wired)"


def membership_rows(reference_models: int) -> list[dict[str, Any]]:
    params = {**DEFAULT_MEMBERSHIP_PARAMS, "reference_models": reference_models}
    tools: dict[str, Callable[..., np.ndarray]] = {"modelgate LOSS": ours_loss, "modelgate LiRA": ours_lira}
    try:
        import art  # noqa: F401

        tools["ART black-box nn"] = art_blackbox("nn")
        tools["ART black-box rf"] = art_blackbox("rf")
    except Exception as exc:  # noqa: BLE001
        print(f"ART not available: {type(exc).__name__}: {exc}")
    rows = []
    targets: dict[str, Callable[[], Target]] = {
        "overfit-200": lambda: overfit_target(200),
        "overfit-400": lambda: overfit_target(400),
        "demo digits-cnn": demo_target,
    }
    for target_name, build in targets.items():
        model, x, y, member = build()
        for p in model.parameters():
            p.requires_grad_(False)
        attack = halves(member)
        truth = member[~attack]
        correct = (logits_of(model, x).argmax(1) == y).numpy()
        for name, tool in tools.items():
            torch.manual_seed(0)
            start, cpu = time.perf_counter(), time.process_time()
            scores = tool(model, x, y, member, attack, params)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            figures = attack_figures(scores, truth, bootstrap=1000, seed=0)
            row = {
                "target": target_name,
                "train/test acc": f"{correct[member].mean():.3f}/{correct[~member].mean():.3f}",
                "challenge (in/out)": f"{int(truth.sum())}/{int((~truth).sum())}",
                "attack": name,
                "AUC": _fmt(figures.auc),
                "TPR@1%FPR": _fmt(figures.tpr[0.01]),
                "TPR@0.1%FPR": _fmt(figures.tpr[0.001]),
                "wall s": round(wall, 2),
                "CPU s": round(cpu, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def training_rows(reference_models: int) -> list[dict[str, Any]]:
    """The cost centre on its own: the same reference models trained batched (one vmap) and one at a time."""
    model, x, y, member = overfit_target(200)
    pool = np.flatnonzero(~member)
    config = LiraConfig.from_params({**DEFAULT_MEMBERSHIP_PARAMS, "reference_models": reference_models})
    mask = balanced_assignment(len(pool), config.reference_models, config.in_models, config.seed)
    xp, yp = x[torch.from_numpy(pool)], y[torch.from_numpy(pool)]
    rows, logits = [], {}
    for name, batched in (("batched (vmap)", True), ("one at a time", False)):
        start, cpu = time.perf_counter(), time.process_time()
        models = train_reference_models(model, xp, yp, mask, config.recipe, config.seed, batched=batched)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        logits[name] = reference_logits(models, x)
        accuracy = float((logits[name].argmax(-1) == y).float().mean())
        steps = config.recipe.epochs * -(-int(mask[0].sum()) // config.recipe.batch_size)
        row = {"training": name, "models": config.reference_models, "steps each": steps}
        row.update({"records each": int(mask[0].sum()), "accuracy (all digits)": round(accuracy, 4)})
        rows.append({**row, "wall s": round(wall, 2), "CPU s": round(cpu, 2)})
        print(json.dumps(rows[-1]), flush=True)
    difference = float((logits["batched (vmap)"] - logits["one at a time"]).abs().max())
    for row in rows:
        row["max logit difference"] = f"{difference:.1e}"
    return rows


def _fmt(interval: Any) -> str:
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def inversion_rows() -> list[dict[str, Any]]:
    """Ours (all classes batched, hinge + TV) vs ART MIFace (1 - p_c per class batch), same start and steps."""
    model, _ = train_digits_cnn(0)
    model.eval()
    data = digits_dataset(0)
    x, y = data.test_x, data.test_y
    config = InversionConfig()
    rows = []
    start, cpu = time.perf_counter(), time.process_time()
    ours = invert(model, 10, (1, 16, 16), config, torch.device("cpu"), (x, y)).images
    rows.append(_inversion_row("modelgate (batched)", model, ours, x, y, start, cpu))
    try:
        from art.attacks.inference.model_inversion import MIFace
        from art.estimators.classification import PyTorchClassifier
    except Exception as exc:  # noqa: BLE001
        print(f"ART MIFace not available: {type(exc).__name__}: {exc}")
        return rows
    probabilities = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    classifier = PyTorchClassifier(
        probabilities, loss=torch.nn.NLLLoss(), input_shape=(1, 16, 16), nb_classes=10, clip_values=(0.0, 1.0)
    )
    x0 = np.repeat(x.mean(dim=0, keepdim=True).numpy(), 10, axis=0)
    start, cpu = time.perf_counter(), time.process_time()
    attack = MIFace(classifier, max_iter=config.steps, threshold=1.0, learning_rate=0.1, batch_size=10, verbose=False)
    theirs = torch.from_numpy(attack.infer(x0, np.arange(10)))
    rows.append(_inversion_row("ART MIFace", model, theirs, x, y, start, cpu))
    return rows


def _inversion_row(name: str, model: torch.nn.Module, images: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   start: float, cpu: float) -> dict[str, Any]:  # fmt: skip
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    similarity = centred_similarity(images, x, y, 10)
    row = {
        "tool": name,
        "steps": InversionConfig().steps,
        "mean confidence": round(float(class_confidence(model, images).mean()), 4),
        "mean similarity": round(float(np.diag(similarity).mean()), 4),
        "nearest class right": f"{int((similarity.argmax(1) == np.arange(10)).sum())}/10",
        "wall s": round(wall, 2),
        "CPU s": round(cpu, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-models", type=int, default=int(DEFAULT_MEMBERSHIP_PARAMS["reference_models"]))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device("auto")
    meter = privacy_meter_status()
    print(f"ML Privacy Meter: {meter}")
    membership = membership_rows(args.reference_models)
    training = training_rows(args.reference_models)
    inversion = inversion_rows()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), {device}"
    print(f"\n### Membership inference ({datetime.now(UTC):%Y-%m-%d}, {machine}, load {load:.1f})\n")
    print(table(membership))
    print("\n### Reference-model training\n")
    print(table(training))
    print("\n### Class inversion\n")
    print(table(inversion))
    print(json.dumps({"membership": membership, "training": training, "inversion": inversion, "privacy_meter": meter}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
