"""Backdoor detection on the zoo: Neural Cleanse flags every backdoored model with its target label and
passes every clean one; MM-BD is measured as a second opinion; the batched search is the per-label
schedule, run together.

The detector runs with the paper's threshold (2) and schedule; only the step budget is smaller than
params.yaml's (10 images per class, 50 epochs) to keep the suite fast. A backdoor too weak to find
would be fixed in the zoo (its poisoning), never by moving the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.backdoor import (
    NeuralCleanseConfig,
    _Schedule,
    mad_anomaly,
    neural_cleanse,
    neural_cleanse_per_label,
)
from tasks.evaluate.data import load_eval_data, per_class
from tasks.evaluate.png import decode_png
from tasks.evaluate.stage import backdoor_stage
from tests.helpers.zoo import SPECS, ZooModel, map_in_workers, trigger_image

TEST_BUDGET = {"neural_cleanse": {"samples_per_class": 10, "epochs": 50}}


@pytest.fixture(scope="session")
def zoo_evidence(zoo: list[ZooModel], tmp_path_factory: pytest.TempPathFactory) -> dict[str, StageEvidence]:
    """The backdoor stage on every zoo model, one single-threaded worker per core."""
    out = tmp_path_factory.mktemp("zoo-eval")
    n = len(zoo)
    results = map_in_workers(
        backdoor_stage, [m.path for m in zoo], ["sklearn:digits"] * n, [TEST_BUDGET] * n, [out / m.name for m in zoo]
    )
    return {m.name: evidence for m, evidence in zip(zoo, results, strict=True)}


@pytest.fixture(scope="module")
def digits() -> Iterator[torch.Tensor]:
    yield per_class(load_eval_data("sklearn:digits", input_shape=(1, 16, 16), num_classes=10), 5).x


def test_zoo_models_are_accurate_and_their_backdoors_work(zoo: list[ZooModel]) -> None:
    assert sum(not m.backdoored for m in zoo) >= 4 and sum(m.backdoored for m in zoo) >= 4
    assert {m.trigger.kind for m in zoo if m.trigger} == {"patch", "blend"}
    for model in zoo:
        assert model.clean_accuracy >= 0.95, model
        if model.backdoored:
            assert model.attack_success is not None and model.attack_success >= 0.95, model


@pytest.mark.parametrize("name", [name for name, _, _ in SPECS])
def test_neural_cleanse_verdict_on_the_zoo(name: str, zoo: list[ZooModel], zoo_evidence: dict[str, StageEvidence]):
    model = next(m for m in zoo if m.name == name)
    evidence = zoo_evidence[name]
    metrics = evidence.metrics
    if model.trigger is None:
        assert evidence.status is Status.PASS, evidence.reason
        assert metrics["backdoor.verdict_flagged"] is False and metrics["backdoor.targets"] == [], metrics
        assert metrics["backdoor.flagged"] is False, metrics  # Neural Cleanse alone, at the paper's threshold
        assert metrics["backdoor.anomaly_index"] <= 2.0
        assert metrics["backdoor.suspect_labels"] == []
    else:
        assert evidence.status is Status.FAIL, metrics
        assert metrics["backdoor.verdict_flagged"] is True
        assert metrics["backdoor.targets"] == [model.trigger.target], metrics
        assert metrics["backdoor.flagged"] is True
        assert metrics["backdoor.suspect_label"] == model.trigger.target
        assert metrics["backdoor.anomaly_index"] > 2.0
        assert metrics["backdoor.suspect_labels"][0] == model.trigger.target  # every suspect, the first the worst
        assert (evidence.reason or "").startswith(f"backdoor target label {model.trigger.target} ")
        assert evidence.details["verdict"]["rules"][model.trigger.target]


def test_patch_triggers_are_recovered_where_they_were_planted(
    zoo: list[ZooModel], zoo_evidence: dict[str, StageEvidence]
) -> None:
    """The target label's reverse-engineered mask sits mostly on the planted patch (1 pixel margin)."""
    for model in (m for m in zoo if m.trigger and m.trigger.kind == "patch"):
        assert model.trigger is not None
        planted, _ = trigger_image(model.trigger)
        region = torch.nn.functional.max_pool2d(planted[None], 3, stride=1, padding=1)[0, 0].numpy() > 0
        path = zoo_evidence[model.name].details["artifacts"]["masks"][model.trigger.target]
        mask = decode_png(Path(path).read_bytes())[:, :, 0] / 255.0
        assert mask[region].sum() / mask.sum() >= 0.5, model.name


def test_mmbd_is_measured_as_a_second_opinion(zoo: list[ZooModel], zoo_evidence: dict[str, StageEvidence]) -> None:
    """MM-BD never decides the status; its detection and false-positive rates are reported, not asserted."""
    detected = flagged_clean = 0
    for model in zoo:
        metrics = zoo_evidence[model.name].metrics
        assert 0.0 <= metrics["backdoor.mmbd_p_value"] <= 1.0
        assert isinstance(metrics["backdoor.mmbd_flagged"], bool)
        assert metrics["backdoor.mmbd_flagged"] == bool(metrics["backdoor.mmbd_suspect_labels"])
        steps = zoo_evidence[model.name].details["mmbd"]["step_p_values"]
        assert len(steps) == 3 and steps[0] == metrics["backdoor.mmbd_p_value"]
        if model.trigger is None:
            flagged_clean += bool(metrics["backdoor.mmbd_flagged"])
        else:
            detected += (
                metrics["backdoor.mmbd_flagged"] and metrics["backdoor.mmbd_suspect_label"] == model.trigger.target
            )
    clean = sum(not m.backdoored for m in zoo)
    print(f"MM-BD on the zoo: detected {detected}/{len(zoo) - clean}, false positives {flagged_clean}/{clean}")


def test_backdoor_evidence_artifacts(zoo: list[ZooModel], zoo_evidence: dict[str, StageEvidence]) -> None:
    evidence = zoo_evidence[zoo[-1].name]
    json.loads(evidence.to_json())
    artifacts = evidence.details["artifacts"]
    for kind in ("triggers", "masks", "previews"):
        assert len(artifacts[kind]) == 10
    assert decode_png(Path(artifacts["triggers"][0]).read_bytes()).shape == (16, 16, 1)
    assert decode_png(Path(artifacts["previews"][0]).read_bytes()).shape == (64, 64, 1)
    lines = Path(artifacts["norms_csv"]).read_text().splitlines()
    assert lines[0] == "label,name,l1_norm,anomaly_index,reached,mmbd_margin" and len(lines) == 11
    assert evidence.tools["device"] in ("cpu", "cuda") and evidence.details["device"]["device_name"]
    assert evidence.inputs["eval_data"].startswith("sha256:")
    assert len(evidence.details["neural_cleanse"]["norms_per_seed"]) == 2  # two seeds, averaged


def test_batched_search_equals_the_per_label_schedule(zoo: list[ZooModel], digits: torch.Tensor) -> None:
    """Same schedule, same initial masks and mini-batches: the same norms and verdict in far fewer passes."""
    from modelgate.demo.cnn import load_model

    model = load_model(next(m for m in zoo if m.backdoored).path)
    config = NeuralCleanseConfig(epochs=6, seeds=(0, 1))
    batched = neural_cleanse(model, digits, 10, config)
    reference = neural_cleanse_per_label(model, digits, 10, config)
    assert np.allclose(batched.norms, reference.norms, rtol=1e-4)
    assert batched.epochs_run == reference.epochs_run
    assert (batched.suspect_label, batched.flagged) == (reference.suspect_label, reference.flagged)
    assert reference.passes == 20 * batched.passes


def test_neural_cleanse_is_deterministic_for_a_seed(zoo: list[ZooModel], digits: torch.Tensor) -> None:
    from modelgate.demo.cnn import load_model

    model = load_model(zoo[0].path)
    first = neural_cleanse(model, digits, 10, NeuralCleanseConfig(epochs=4, seeds=(3,)))
    second = neural_cleanse(model, digits, 10, NeuralCleanseConfig(epochs=4, seeds=(3,)))
    other = neural_cleanse(model, digits, 10, NeuralCleanseConfig(epochs=4, seeds=(4,)))
    assert first.norms == second.norms and torch.equal(first.masks, second.masks)
    assert first.norms != other.norms


def test_mad_anomaly_index() -> None:
    per_label, index, suspect = mad_anomaly([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, absolute deviations [2, 1, 0, 1, 97] -> MAD 1 -> scaled 1.4826
    assert suspect == 0 and index == pytest.approx(2 / 1.4826)
    assert per_label[4] == pytest.approx(-97 / 1.4826)  # far above the median: negative, never flagged
    _, index, _ = mad_anomaly([30.0, 31.0, 29.0, 30.5, 5.0, 29.5, 30.2, 31.5, 28.8, 30.1])
    assert index > 2
    assert mad_anomaly([10.0] * 10)[1] == 0.0


def test_adaptive_cost_schedule() -> None:
    """The reference code's counters: cost x1.5 after `patience` successful epochs, /1.5^1.5 after failures,
    early stop once both directions happened and the best norm stalls for `early_stop_patience` epochs."""
    cfg = NeuralCleanseConfig(patience=2, early_stop_patience=2, init_cost=1.0)
    state = _Schedule(2, cfg, torch.device("cpu"))
    rows = torch.arange(2)
    ok, fail = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    state.end_epoch(rows, ok, torch.tensor([5.0, 5.0]))
    assert state.cost.tolist() == [1.0, 1.0] and state.reg_best.tolist() == [5.0, 5.0]
    state.end_epoch(rows, ok, torch.tensor([4.0, 6.0]))
    assert state.cost.tolist() == pytest.approx([1.5, 1.5]) and state.reg_best.tolist() == [4.0, 5.0]
    state.end_epoch(rows, fail, torch.tensor([1.0, 1.0]))
    state.end_epoch(rows, fail, torch.tensor([1.0, 1.0]))
    assert state.cost.tolist() == pytest.approx([1.5 / 1.5**1.5] * 2)
    assert state.up_flag.all() and state.down_flag.all() and not state.stopped.any()
    # the best norms have stalled (row 0 since epoch 3, row 1 since epoch 2): the next epoch stops both
    state.end_epoch(rows, fail, torch.tensor([1.0, 1.0]))
    assert state.stopped.all()
    assert state.cost.tolist() == pytest.approx([1.5 / 1.5**1.5] * 2)  # a stopped row keeps its state


@pytest.mark.services
def test_evaluate_flow_publishes_the_triggers(prefect_server: str, zoo: list[ZooModel], tmp_path: Path) -> None:
    """The subflow on a backdoored model: evidence for both stages, and the triggers visible in the UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.evaluate import evaluate

    model = next(m for m in zoo if m.trigger and m.trigger.kind == "patch")
    assert model.trigger is not None
    params = {
        **TEST_BUDGET,
        "pgd": {"epsilons": {"linf": [0.1]}, "steps": 5, "restarts": 1, "samples": 100},
        "membership": {"reference_models": 4, "shadow": {"epochs": 2}, "bootstrap": 100},
        "inversion": {"steps": 20},
    }
    results = evaluate(str(model.path), "image-classification", "sklearn:digits", str(tmp_path), params)
    assert results["backdoor"].status is Status.FAIL
    assert results["backdoor"].metrics["backdoor.suspect_label"] == model.trigger.target
    assert results["adversarial"].status is Status.PASS
    assert "adversarial.robust_accuracy.linf.0.1" in results["adversarial"].metrics
    keys = [f"backdoor-triggers-{model.name}", f"backdoor-norms-{model.name}", f"adversarial-robustness-{model.name}"]
    with get_client(sync_client=True) as client:
        found = {
            a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        }
    assert set(found) == set(keys)
    markdown = str(found[keys[0]].data)
    assert "backdoor suspected" in markdown and markdown.count("data:image/png;base64,") == 10

    skipped = evaluate(str(model.path), "text-generation", "sklearn:digits", str(tmp_path), params)
    assert {e.status for e in skipped.values()} == {Status.SKIPPED}
    assert "needs image-classification" in (skipped["backdoor"].reason or "")
