"""Issue 5's promise through the real flow: a backdoored model is rejected by `no-backdoor` with its
trigger published to the Prefect UI, a clean one passes; weights reach the evaluations only through
the safe loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelgate.request import IntakeRequest
from tests.helpers.budgets import SMALL_BUDGET

pytestmark = pytest.mark.services


@pytest.fixture
def small_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(SMALL_BUDGET))
    monkeypatch.setenv("MODELGATE_PARAMS_FILE", str(params))


def test_backdoored_model_is_rejected_with_its_trigger_shown(
    prefect_server: str, zoo: list, small_budget: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.intake import intake

    model = next(m for m in zoo if m.trigger and m.trigger.kind == "patch")
    request = IntakeRequest(source=str(model.path), name="zoo-backdoored", version="1.0.0", eval_data="sklearn:digits")
    outcome = intake(request)
    assert outcome.decision == "rejected"
    assert any(reason.startswith("no-backdoor") for reason in outcome.reasons), outcome.reasons
    assert outcome.stages["load"] == "pass"
    backdoor = json.loads((Path(outcome.evidence_dir) / "backdoor.json").read_text())
    assert backdoor["metrics"]["backdoor.suspect_label"] == model.trigger.target
    load = json.loads((Path(outcome.evidence_dir) / "load.json").read_text())
    assert load["details"]["weights"][0]["sha256"], "the loader checked the manifest digest"
    with get_client(sync_client=True) as client:
        keys = ["backdoor-triggers-zoo-backdoored"]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    assert artifacts and "data:image/png;base64," in str(artifacts[0].data)


def test_clean_signed_model_passes_and_a_retry_does_not_evaluate_again(
    prefect_server: str, examples: dict[str, Path], small_budget: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies after its evaluations reuses the evaluation subflow's result when it is retried."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    import flows.intake as module
    from tests.helpers.faults import crash_once
    from tests.helpers.server_records import task_states

    crashes = crash_once(monkeypatch, module, "gate_task", "the worker died after the evaluations (simulated)")
    request = IntakeRequest(
        source=str(examples["digits-cnn-signed"]), name="clean-cnn", version="1.0.0", eval_data="sklearn:digits"
    )
    outcome = module.intake.with_options(retries=1, retry_delay_seconds=0)(request)
    assert crashes == [1]
    assert outcome.decision == "approved", outcome.reasons
    assert outcome.stages["backdoor"] == "pass"
    assert outcome.stages["adversarial"] == "pass"
    assert not any("evaluations-ran" in w for w in outcome.warnings)
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[outcome.run_id]))
        )
    assert [run.state_name for run in children] == ["Completed"], "one evaluation subflow run, not run again"
    states = task_states(str(children[0].id))
    for task in ("eval-backdoor", "eval-adversarial", "eval-membership"):
        assert states[task] == ["Completed"], (task, states.get(task))


def test_unsafe_model_is_never_loaded(prefect_server: str, tmp_path: Path) -> None:
    """A model whose scan fails never reaches the loader, even with evaluation data."""
    import pickle

    from flows.intake import intake

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"cos\nsystem\n(S'echo evil'\ntR." + pickle.dumps({}))
    outcome = intake(IntakeRequest(source=str(folder), name="evil", version="1.0.0", eval_data="sklearn:digits"))
    assert outcome.decision == "rejected"
    assert outcome.stages["load"] == "skipped"
    assert outcome.stages["backdoor"] == "skipped"
