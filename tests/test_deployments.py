"""Deployments, GPU limit and work pools, retries, and caching that resumes runs without skipping a changed model."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from modelgate.request import IntakeRequest, ModelTask
from modelgate.settings import load_settings
from tests.helpers.faults import crash_once
from tests.helpers.paths import REPO
from tests.helpers.ports import free_port
from tests.helpers.server_records import task_runs, task_states

# --------------------------------------------------------------------------- the deployments and the form


def test_deployments_offer_a_described_form_whose_defaults_run_the_demo_example() -> None:
    from flows.deployments import build_deployments

    deployments = {d.name: d for d in build_deployments()}
    assert set(deployments) == {"intake", "evaluate", "regate"}
    assert {d.entrypoint for d in deployments.values()} == {
        "flows.intake.intake",
        "flows.evaluate.evaluate",
        "flows.regate.regate",
    }
    assert "gpu" in deployments["evaluate"].tags
    intake = deployments["intake"]
    assert intake.enforce_parameter_schema
    schema = intake._parameter_openapi_schema.model_dump()
    fields = schema["definitions"]["IntakeRequest"]["properties"]
    assert all(field.get("description") for field in fields.values()), "every form field explains itself"
    assert "<" not in str(fields), "the UI renders descriptions as markdown: no <placeholders>"
    task_enum = schema["definitions"]["ModelTask"]["enum"]
    assert task_enum == [t.value for t in ModelTask]
    defaults = IntakeRequest.model_validate(intake.parameters["request"])
    assert defaults.source == str(load_settings().home / "examples" / "digits-cnn-signed")
    assert defaults.eval_data == "sklearn:digits"


def test_prefect_yaml_matches_the_served_deployments() -> None:
    from flows.deployments import build_deployments

    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in document["deployments"]}
    for deployment in build_deployments():
        entry = declared[deployment.name]
        assert entry["entrypoint"] == deployment.entrypoint, "module paths: results unpickle in any process"
        assert sorted(entry["tags"]) == sorted(deployment.tags)
    assert declared["evaluate"]["work_pool"]["name"] == "gpu"
    IntakeRequest.model_validate(declared["intake"]["parameters"]["request"])


def test_serve_is_started_by_its_command_and_fails_in_one_line_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelgate import services
    from modelgate.cli import main

    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    specs = services.load_specs(load_settings())
    assert [name for name, spec in specs.items() if spec.autostart] == ["s3", "prefect"]
    assert not specs["serve"].autostart
    result = CliRunner().invoke(main, ["serve", "--background"])
    assert result.exit_code == 2
    assert "no Prefect server" in result.output and "Traceback" not in result.output


@pytest.mark.services
def test_server_registers_and_validates_the_form_and_the_gpu_limit_is_idempotent(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client

    from flows.deployments import default_request, ensure_infrastructure, register_deployments

    assert len(register_deployments()) == 3
    with get_client(sync_client=True) as client:
        try:
            ensure_infrastructure()
            again = ensure_infrastructure()
            assert again == {"gpu_slots": 1, "work_pools_created": []}, "a second setup creates nothing"
            assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
            for name in ("default", "gpu"):
                assert client.read_work_pool(name).type == "process"
            deployment = client.read_deployment_by_name("intake/intake")
            bad: dict[str, Any] = {"request": {**default_request(), "model_task": "poetry"}}
            with pytest.raises(Exception, match="(?i)validation"):
                client.create_flow_run_from_deployment(deployment.id, parameters=bad)
            good = client.create_flow_run_from_deployment(deployment.id, parameters={"request": default_request()})
            client.delete_flow_run(good.id)
        finally:
            client.delete_concurrency_limit_by_tag("gpu")  # other tests run evaluations on this server


@pytest.mark.services
def test_an_evaluation_run_holds_one_gpu_slot_and_gives_it_back(
    prefect_server: str, examples: dict[str, Path], tmp_path: Path
) -> None:
    """The subflow takes the `gpu` limit's slot (and releases it), so the limit bounds evaluation runs."""
    from prefect.client.orchestration import get_client

    import flows.evaluate as evaluate_module
    from flows.deployments import ensure_gpu_limit

    seen: list[int] = []
    original = evaluate_module._run

    def spy(*args: Any, **kwargs: Any) -> Any:
        with get_client(sync_client=True) as client:
            seen.append(client.read_global_concurrency_limit_by_name("tag:gpu").active_slots)
        return original(*args, **kwargs)

    ensure_gpu_limit(1)
    try:
        evaluate_module._run = spy
        results = evaluate_module.evaluate(
            str(examples["digits-cnn"]), "text-generation", "builtin:synthetic-text", str(tmp_path)
        )
        with get_client(sync_client=True) as client:
            after = client.read_global_concurrency_limit_by_name("tag:gpu").active_slots
    finally:
        evaluate_module._run = original
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("gpu")  # other tests run evaluations on this server
    assert results["leakage"].status.value == "skipped"  # an image model: nothing to probe
    assert seen == [1, 1, 1], "one slot held while each evaluation is submitted"
    assert after == 0, "the slot is given back"


@pytest.mark.services
def test_without_a_gpu_limit_no_lease_is_asked_for(
    prefect_server: str, examples: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No limit, nothing to hold: the evaluations run without a lease request (a write on the server)."""
    import flows.evaluate as evaluate_module

    leases: list[str] = []
    monkeypatch.setattr(evaluate_module, "concurrency", lambda name, **kwargs: leases.append(name))
    results = evaluate_module.evaluate(
        str(examples["digits-cnn"]), "text-generation", "builtin:synthetic-text", str(tmp_path)
    )
    assert results["forensics"].status.value == "skipped"  # no reference: the stage ran and said so
    assert leases == []


# --------------------------------------------------------------------------- retries and caching


def _run_counts(states: list[Any]) -> list[int]:
    runs = {run.id: run for run in task_runs(str(states[0].state_details.flow_run_id))}
    return [runs[s.state_details.task_run_id].run_count for s in states]


@pytest.mark.services
def test_fetch_retries_a_transient_error_and_never_caches_an_error(prefect_server: str, tmp_path: Path) -> None:
    from prefect import flow

    from modelgate.evidence import Status
    from tasks.fetch import fetch_task

    fast = fetch_task.with_options(retry_delay_seconds=0)
    settings = replace(load_settings(), http_timeout_s=3)
    unreachable = f"http://127.0.0.1:{free_port()}/model.bin"

    @flow
    def fetch_twice(source: str, workspace: Path) -> list[Any]:
        return [fast(source, workspace, settings, return_state=True) for _ in range(2)]

    refused = fetch_twice(unreachable, tmp_path / "ws")
    missing = fetch_twice(str(tmp_path / "missing"), tmp_path / "ws2")
    for state in [*refused, *missing]:
        evidence, fetched = state.result()
        assert evidence.status is Status.ERROR and fetched is None
        assert state.name != "Cached", "an error is never reused"
    assert _run_counts(refused) == [3, 3], "two retries of a refused connection, then the error is evidence"
    assert _run_counts(missing) == [1, 1], "a missing source is a refusal: never retried"

    ok = fetch_twice(str(REPO / "policies" / "trust"), tmp_path / "ws3")
    assert [s.name for s in ok] == ["Completed", "Cached"], "the same run's finished fetch is reused"


@pytest.fixture(scope="module")
def probe_runs(prefect_server: str, examples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three intakes: a model, the same bytes at another path, then those bytes changed."""
    from flows.intake import intake
    from modelgate.demo.build import default_key_path, sign_model

    root = tmp_path_factory.mktemp("cache-probe")
    first, same, changed = root / "first", root / "same", root / "changed"
    # Bytes no other test of the session has taken in (the scan cache is keyed on content): the
    # plain example with a unique file, signed by the demo publisher so the intake approves it.
    shutil.copytree(examples["digits-cnn"], first)
    (first / "PROBE.txt").write_text(f"cache probe {uuid.uuid4()}\n")
    sign_model(first, default_key_path())
    shutil.copytree(first, same)
    shutil.copytree(first, changed)
    (changed / "NOTES.md").write_text("added after signing\n")
    outcomes = {}
    for label, folder, version in (("first", first, "1.0.0"), ("same", same, "1.0.1"), ("changed", changed, "1.0.2")):
        outcomes[label] = intake(IntakeRequest(source=str(folder), name="cache-probe", version=version))
    return outcomes


@pytest.mark.services
def test_same_content_is_not_scanned_twice_but_a_changed_model_is(probe_runs: dict) -> None:
    first, same, changed = probe_runs["first"], probe_runs["same"], probe_runs["changed"]
    assert task_states(first.run_id)["scan"] == ["Completed"]
    assert task_states(same.run_id)["scan"] == ["Cached"], "same root digest: the scan is reused"
    assert task_states(same.run_id)["fetch"] == ["Completed"], "a new run always fetches its source"
    assert task_states(changed.run_id)["scan"] == ["Completed"], "changed bytes: scanned again"
    assert (same.decision, same.root_digest) == (first.decision, first.root_digest) == ("approved", first.root_digest)
    reused = json.loads((Path(same.evidence_dir) / "scan.json").read_text())
    assert reused["details"]["root"] == same.model_dir, "the reused report names this run's folder"
    assert reused["details"]["reused_scan_of"] == first.model_dir
    rescanned = json.loads((Path(changed.evidence_dir) / "scan.json").read_text())
    assert "NOTES.md" in [f["path"] for f in rescanned["details"]["files"]]
    assert changed.root_digest != first.root_digest


@pytest.mark.services
def test_report_artifacts_link_the_evidence_and_list_every_rule(probe_runs: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    first = probe_runs["first"]
    decision = (Path(first.evidence_dir) / "decision.json").read_text()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["intake-cache-probe", "intake-rules-cache-probe"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[first.run_id]),
            )
        )
    by_key = {a.key: a for a in artifacts}
    report = str(by_key["intake-cache-probe"].data)
    assert "APPROVED" in report and "## Rules" in report and "## Links" in report
    assert f"evidence folder: `{first.evidence_dir}`" in report
    assert "Data Docs" in report and "data_docs/index.html" in report
    rows = json.loads(str(by_key["intake-rules-cache-probe"].data))
    assert {row["rule"] for row in rows} == {rule["id"] for rule in json.loads(decision)["rules"]}
    assert all(row["verdict"] in ("pass", "fail", "waived") and "saw" in row for row in rows)


@pytest.mark.services
def test_a_retried_run_resumes_without_fetching_again(
    prefect_server: str, examples: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.intake as module

    crashes = crash_once(monkeypatch, module, "manifest_task", "the worker died (simulated)")
    flaky = module.intake.with_options(retries=1, retry_delay_seconds=0)
    outcome = flaky(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="resume-probe", version="1.0.0"))
    assert crashes == [1] and outcome.decision == "approved"
    assert task_states(outcome.run_id)["fetch"] == ["Completed", "Cached"], "the retry reused the finished fetch"


def test_a_bad_count_in_the_environment_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.deployments import gpu_slots
    from modelgate.errors import SettingError

    assert gpu_slots() == 1
    monkeypatch.setenv("MODELGATE_GPU_SLOTS", "3")
    assert gpu_slots() == 3
    for bad in ("two", "0"):
        monkeypatch.setenv("MODELGATE_GPU_SLOTS", bad)
        with pytest.raises(SettingError, match=f"MODELGATE_GPU_SLOTS='{bad}': expected a whole number of at least 1"):
            gpu_slots()
