"""PGD: agrees with torchattacks (and ART) on the same model, data and parameters; eps=0 is clean accuracy;
adversarial examples are valid; deterministic for a seed; the stage reports stable metric keys and a CSV.

The peers live in ``.venv-peers-eval/site`` (bench/requirements-peers-eval.txt; ``make test`` installs
them); without that folder the agreement tests skip and say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelgate.evidence import Status
from tasks.evaluate.adversarial import PGDConfig, evaluate_robustness, pgd
from tasks.evaluate.data import load_eval_data
from tasks.evaluate.stage import adversarial_stage

PEERS = Path(__file__).resolve().parents[1] / ".venv-peers-eval" / "site"
NO_PEERS = f"peer tools not installed in {PEERS} (see bench/requirements-peers-eval.txt)"
ATTACKS = [("linf", 0.03), ("linf", 0.1), ("l2", 0.5), ("l2", 1.0)]
STEPS, RELATIVE_STEP = 10, 0.25


def _peer(module: str):  # noqa: ANN202 - the imported module
    if not PEERS.is_dir():
        pytest.skip(NO_PEERS)
    if str(PEERS) not in sys.path:
        sys.path.append(str(PEERS))
    return pytest.importorskip(module, reason=f"{module} does not import from {PEERS}")


@pytest.fixture(scope="module")
def model(examples: dict[str, Path]) -> torch.nn.Module:
    from modelgate.demo.cnn import load_model

    return load_model(examples["digits-cnn"])


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10)
    return digits.x, digits.y


def _clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, **kw: int) -> float:
    _, robust = pgd(model, x, y, PGDConfig(norm, eps, STEPS, RELATIVE_STEP * eps, **kw))
    return float(robust.float().mean())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_is_clean_accuracy(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], norm: str):
    x, y = data
    assert _ours(model, x, y, norm, 0.0) == _clean_accuracy(model, x, y)
    report = evaluate_robustness(model, x, y, [PGDConfig(norm, 0.0, STEPS, 0.0)])
    assert report.rows[0]["robust_accuracy"] == report.clean_accuracy
    assert report.rows[0]["attack_success_rate"] == 0.0


@pytest.mark.parametrize(("norm", "eps"), ATTACKS)
def test_agrees_with_torchattacks(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], norm: str, eps: float
):
    torchattacks = _peer("torchattacks")
    x, y = data
    alpha = RELATIVE_STEP * eps
    if norm == "linf":
        attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
    else:
        attack = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
    torch.manual_seed(0)
    theirs = _clean_accuracy(model, attack(x, y), y)
    ours = _ours(model, x, y, norm, eps)
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_agrees_with_art(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], norm: str, eps: float):
    _peer("art")
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    x, y = data
    classifier = PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 16, 16), nb_classes=10, clip_values=(0.0, 1.0)
    )
    attack = ProjectedGradientDescentPyTorch(
        classifier, norm=float("inf") if norm == "linf" else 2, eps=eps, eps_step=RELATIVE_STEP * eps,
        max_iter=STEPS, num_random_init=1, batch_size=512, verbose=False,
    )  # fmt: skip
    np.random.seed(0)  # ART draws its random start from numpy's global generator: seeded, the run is repeatable
    theirs = _clean_accuracy(model, torch.from_numpy(attack.generate(x.numpy(), y=y.numpy())), y)
    ours = _ours(model, x, y, norm, eps)
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_adversarial_examples_are_valid(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], norm: str, eps: float
):
    x, y = data
    adversarial, robust = pgd(model, x, y, PGDConfig(norm, eps, STEPS, RELATIVE_STEP * eps))
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    with torch.no_grad():
        assert bool((model(adversarial).argmax(1) != y)[~robust].all())  # every broken sample is misclassified
    assert 0 < int((~robust).sum()) < len(y)


def test_deterministic_and_restarts_only_break_more(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]):
    x, y = data[0][:100], data[1][:100]
    first = pgd(model, x, y, PGDConfig("linf", 0.06, STEPS, 0.015, restarts=1, seed=5))[1]
    again = pgd(model, x, y, PGDConfig("linf", 0.06, STEPS, 0.015, restarts=1, seed=5))[1]
    more = pgd(model, x, y, PGDConfig("linf", 0.06, STEPS, 0.015, restarts=3, seed=5))[1]
    assert torch.equal(first, again)
    assert bool((more <= first).all())  # the first restart is the same; later ones only add breaks


def test_adversarial_stage_metrics_and_csv(examples: dict[str, Path], tmp_path: Path) -> None:
    params = {"pgd": {"epsilons": {"linf": [0.03, 0.1], "l2": [0.5]}, "steps": 10, "restarts": 1, "samples": 200}}
    evidence = adversarial_stage(examples["digits-cnn"], "sklearn:digits", params, tmp_path)
    assert evidence.status is Status.PASS, evidence.reason
    metrics = evidence.metrics
    assert set(metrics) == {
        "adversarial.clean_accuracy", "adversarial.samples",
        "adversarial.robust_accuracy.linf.0.03", "adversarial.attack_success_rate.linf.0.03",
        "adversarial.robust_accuracy.linf.0.1", "adversarial.attack_success_rate.linf.0.1",
        "adversarial.robust_accuracy.l2.0.5", "adversarial.attack_success_rate.l2.0.5",
    }  # fmt: skip
    assert metrics["adversarial.samples"] == 200
    assert metrics["adversarial.robust_accuracy.linf.0.1"] <= metrics["adversarial.clean_accuracy"]
    assert 0.0 <= metrics["adversarial.attack_success_rate.linf.0.1"] <= 1.0
    csv = Path(evidence.details["artifacts"]["robustness_csv"]).read_text().splitlines()
    assert csv[0] == "eps,norm,robust_accuracy"
    assert [line.split(",")[:2] for line in csv[1:]] == [
        ["0", "l2"],
        ["0.5", "l2"],
        ["0", "linf"],
        ["0.03", "linf"],
        ["0.1", "linf"],
    ]
    assert evidence.details["device"]["device"] == evidence.tools["device"]
