"""The evidence ledger with real git, real dvc and the real S3 server (SeaweedFS).

Two intakes become two DVC experiments with the right params and metrics, ``dvc metrics diff`` shows
what changed, a run's evidence is restored from the DVC remote and matches its decision record,
``dvc repro`` of a recorded run gives the same metrics exactly, two concurrent intakes both land
intact, and a bad run id or a missing remote is one line. The evidence comes from the same stage
functions the flow and ``dvc repro`` run (flows/dvc_stages.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from click.testing import CliRunner

from flows import dvc_stages as stages
from modelgate.cli.audit import audit_group
from modelgate.evidence import Status, write_evidence
from modelgate.ledger.audit import compare_metrics, find_intake, list_intakes
from modelgate.ledger.commands import dvc, git, tool_env
from modelgate.ledger.config import LedgerConfig, load_ledger_config
from modelgate.ledger.layout import EVIDENCE_DIR, EVIDENCE_FILES, PIPELINE, STAGE_COMMAND, experiment_name
from modelgate.ledger.metrics import flat_metrics
from modelgate.ledger.version import version_stage
from modelgate.policy.decision import Decision
from modelgate.request import IntakeRequest
from modelgate.s3 import make_s3_client
from tests.helpers.marks import starts_server
from tests.helpers.servers import S3Server, seaweedfs

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[1]
ENDPOINT_VARS = ("MODELGATE_S3_ENDPOINT", "MODELGATE_DVC_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class Run(NamedTuple):
    folder: Path
    request: IntakeRequest
    decision: Decision
    run_id: str


@pytest.fixture(scope="module")
@starts_server
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory) as server:
        yield server


def _point_at(mp: pytest.MonkeyPatch, s3: S3Server, base: Path) -> LedgerConfig:
    """A ledger of its own under ``base``, with the test S3 server as the DVC remote."""
    for name in ENDPOINT_VARS:
        mp.delenv(name, raising=False)
    mp.setenv("MODELGATE_LEDGER", "on")
    mp.setenv("MODELGATE_S3_ENDPOINT", s3.endpoint_url)
    mp.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    mp.setenv("MODELGATE_LEDGER_REMOTE", str(base / "ledger.git"))
    mp.setenv("MODELGATE_LEDGER_DIR", str(base / "ledger"))
    mp.setenv("MODELGATE_DVC_BUCKET", f"dvc-{uuid.uuid4().hex[:8]}")
    return load_ledger_config()


def _intake(base: Path, source: Path, name: str) -> Run:
    """One intake run's evidence, stage by stage as the flow records it (no evaluation data)."""
    run_id = str(uuid.uuid4())
    folder, scratch, params = base / name / run_id, base / "scratch" / run_id, base / f"{run_id}.yaml"
    request = IntakeRequest(source=str(source), name=name, version="1.0.0")
    recorded = {"run_id": run_id, "experiment": experiment_name(name, "1.0.0", run_id)}
    params.write_text(yaml.safe_dump({"intake": recorded}))
    write_evidence(folder, "request", request)
    for stage in (stages.fetch_stage, stages.manifest_stage, stages.signature_stage, stages.provenance_stage):
        stage(folder, scratch)
    stages.scan_stage(folder, scratch)
    stages.evaluate_stage(folder, scratch, params)
    stages.validate_stage(folder, params)
    stages.gate_stage(folder, params)
    return Run(folder, request, Decision.model_validate_json((folder / "decision.json").read_bytes()), run_id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, examples: dict[str, Path]) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("intakes")
    return {name: _intake(base, examples[name], name) for name in ("digits-cnn-signed", "digits-cnn-unsigned")}


class Ledger(NamedTuple):
    config: LedgerConfig
    recorded: dict[str, Any]  # run id -> the version stage's evidence


def _record_concurrently(runs: list[Run]) -> dict[str, Any]:
    """Every run's version stage at the same time, each in its own thread (as concurrent flow runs do)."""
    results: dict[str, Any] = {}

    def record(run: Run) -> None:
        results[run.run_id] = version_stage(run.folder, request=run.request, decision=run.decision, run_id=run.run_id)

    threads = [threading.Thread(target=record, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.fixture(scope="module")
def ledger(s3: S3Server, runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Both runs recorded at the same time into a fresh, empty ledger (they also race to create its baseline)."""
    with pytest.MonkeyPatch.context() as mp:
        config = _point_at(mp, s3, tmp_path_factory.mktemp("ledger"))
        yield Ledger(config, _record_concurrently(list(runs.values())))


def _experiments(config: LedgerConfig) -> dict[str, dict[str, Any]]:
    """``dvc exp show --json`` in the auditor's checkout: experiment name -> its params and metrics."""
    shown = json.loads(dvc(["exp", "show", "--json"], config.checkout, tool_env(config)))
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                found[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": data["metrics"][f"{EVIDENCE_DIR}/metrics.json"]["data"],
                    "rev": rev["rev"],
                }
    return found


def test_two_intakes_become_two_experiments(ledger: Ledger, runs: dict[str, Run]) -> None:
    experiments = _experiments(ledger.config)
    assert len(experiments) == 2
    for run in runs.values():
        shown = experiments[experiment_name(run.request.name, "1.0.0", run.run_id)]
        intake = shown["params"]["intake"]
        assert intake["run_id"] == run.run_id
        assert (intake["name"], intake["version"], intake["source"]) == (run.request.name, "1.0.0", run.request.source)
        assert intake["root_digest"] == run.decision.model.root_digest
        assert intake["policy_digest"] == run.decision.policy.digest
        assert "evaluate" in shown["params"] and "validation" in shown["params"]
        assert shown["metrics"] == flat_metrics(run.folder)
        assert shown["metrics"]["decision.approved"] == int(run.decision.approved)
    signed = experiments[experiment_name("digits-cnn-signed", "1.0.0", runs["digits-cnn-signed"].run_id)]
    assert signed["metrics"]["signature.verified"] == 1 and signed["metrics"]["validation.success"] == 1
    assert runs["digits-cnn-signed"].decision.dvc_experiment == experiment_name(
        "digits-cnn-signed", "1.0.0", runs["digits-cnn-signed"].run_id
    )


def test_dvc_metrics_diff_shows_the_change(ledger: Ledger, runs: dict[str, Run]) -> None:
    config = ledger.config
    signed, unsigned = (find_intake(config, runs[n].run_id) for n in ("digits-cnn-signed", "digits-cnn-unsigned"))
    diff = dvc(["metrics", "diff", signed.commit, unsigned.commit, "--json"], config.checkout, tool_env(config))
    report = json.loads(diff)
    changes = report[f"{EVIDENCE_DIR}/metrics.json"]
    assert changes["decision.approved"]["old"] == 1 and changes["decision.approved"]["new"] == 0
    assert changes["signature.verified"]["diff"] == -1

    result = CliRunner().invoke(audit_group, ["diff", signed.run_id[:8], unsigned.run_id[:8]])
    assert result.exit_code == 0, result.output
    assert "decision.approved" in result.output and "intake.source" in result.output


def test_audit_list_names_every_intake(ledger: Ledger, runs: dict[str, Run]) -> None:
    result = CliRunner().invoke(audit_group, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = {i["run_id"]: i for i in json.loads(result.output)}
    assert set(listed) == {run.run_id for run in runs.values()}
    for run in runs.values():
        assert listed[run.run_id]["decision"] == run.decision.decision
        assert listed[run.run_id]["root_digest"] == run.decision.model.root_digest
        assert listed[run.run_id]["decided_at"].startswith(run.decision.decided_at.strftime("%Y-%m-%dT%H:%M"))


def test_restore_brings_back_the_full_evidence(ledger: Ledger, runs: dict[str, Run], tmp_path: Path) -> None:
    run = runs["digits-cnn-signed"]
    dest = tmp_path / "restored"
    result = CliRunner().invoke(audit_group, ["restore", run.run_id, "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    assert "evidence files match decision.json" in result.output
    for name in ["request.json", *EVIDENCE_FILES.values(), "gate.json", "decision.json", "report.md"]:
        assert (dest / name).read_bytes() == (run.folder / name).read_bytes(), name
    assert set(run.decision.evidence) <= {p.name for p in dest.iterdir()}
    assert (dest / "policy.yaml").read_bytes() == (REPO / "policies" / "default.yaml").read_bytes()
    assert (dest / "data_docs" / "index.html").is_file()


def test_reproduce_gives_the_same_metrics_exactly(ledger: Ledger, runs: dict[str, Run], tmp_path: Path) -> None:
    run = runs["digits-cnn-signed"]
    result = CliRunner().invoke(audit_group, ["reproduce", run.run_id[:12], "--keep", str(tmp_path / "rerun")])
    assert result.exit_code == 0, result.output
    assert "metrics match exactly" in result.output
    rerun = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    assert rerun == flat_metrics(run.folder)
    assert json.loads((tmp_path / "rerun" / "decision.json").read_text())["decision"] == "approved"


def test_differences_are_reported_key_by_key() -> None:
    changes = compare_metrics({"decision.approved": 1, "scan.files": 3}, {"decision.approved": 0, "stages.fail": 1})
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("decision.approved", 1, 0),
        ("scan.files", 3, None),
        ("stages.fail", None, 1),
    ]


def _objects_intact(config: LedgerConfig, commit: str) -> int:
    """Every cached output of the experiment is in the DVC bucket with the content dvc.lock names."""
    lock = yaml.safe_load(git(["show", f"{commit}:dvc.lock"], config.checkout))
    pipeline = yaml.safe_load(git(["show", f"{commit}:dvc.yaml"], config.checkout))
    in_git = {
        next(iter(o))
        for stage in pipeline["stages"].values()
        for key in ("outs", "metrics", "plots")
        for o in stage.get(key, [])
        if isinstance(o, dict)
    }
    client = make_s3_client(config.endpoint, config.access_key, config.secret_key)
    checked = 0
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in in_git:  # cache: false, committed to git
                continue
            md5 = out["md5"]
            body = client.get_object(Bucket=config.bucket, Key=f"files/md5/{md5[:2]}/{md5[2:]}")["Body"].read()
            assert hashlib.md5(body).hexdigest() == md5, out["path"]  # noqa: S324 - DVC's own content address
            checked += 1
    return checked


def test_two_concurrent_intakes_both_land_intact(ledger: Ledger, runs: dict[str, Run]) -> None:
    config = ledger.config
    status = {run_id: (evidence.status, evidence.reason) for run_id, evidence in ledger.recorded.items()}
    assert status == {run.run_id: (Status.PASS, None) for run in runs.values()}
    intakes = list_intakes(config)
    assert {i.run_id for i in intakes} == {r.run_id for r in runs.values()}
    assert len({i.baseline for i in intakes}) == 1
    assert git(["rev-list", "--count", "origin/main"], config.checkout).strip() == "1"
    for intake in intakes:
        run = next(r for r in runs.values() if r.run_id == intake.run_id)
        assert ledger.recorded[run.run_id].metrics["version.commit"] == intake.commit
        recorded = json.loads(git(["show", f"{intake.commit}:{EVIDENCE_DIR}/metrics.json"], config.checkout))
        assert recorded == flat_metrics(run.folder)
        assert _objects_intact(config, intake.commit) >= len(EVIDENCE_FILES) + 2


@pytest.mark.skipif(
    "version_task" not in (REPO / "flows" / "intake.py").read_text(),
    reason="flows/intake.py does not call validate_task / version_task yet (see docs/audit.md)",
)
def test_the_intake_flow_records_its_run(
    s3: S3Server, examples: dict[str, Path], prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real flow: validation before the gate, the experiment named in the decision, then recorded."""
    import flows.intake as flow_module

    config = _point_at(monkeypatch, s3, tmp_path)
    request = IntakeRequest(
        source=str(examples["digits-cnn-signed"]), name="flow-model", version="1.0.0", publish=False
    )
    outcome = flow_module.intake(request)
    assert outcome.decision == "approved", outcome.reasons
    assert (outcome.stages["validation"], outcome.stages["version"]) == ("pass", "pass")
    folder, name = Path(outcome.evidence_dir), experiment_name("flow-model", "1.0.0", outcome.run_id)
    assert json.loads((folder / "decision.json").read_text())["dvc_experiment"] == name
    assert json.loads((folder / "version.json").read_text())["metrics"]["version.experiment"] == name
    assert (folder / "data_docs" / "index.html").is_file()
    intake = find_intake(config, outcome.run_id)
    assert (intake.experiment, intake.decision) == (name, "approved")
    recorded = json.loads(git(["show", f"{intake.commit}:{EVIDENCE_DIR}/metrics.json"], config.checkout))
    assert (recorded["decision.approved"], recorded["validation.success"]) == (1, 1)


def test_bad_run_id_and_missing_ledger_are_one_line(ledger: Ledger, tmp_path: Path) -> None:
    result = CliRunner().invoke(audit_group, ["restore", "no-such-run", "--dest", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: no intake run 'no-such-run'")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_ledger_or_dvc_remote_is_one_line(
    runs: dict[str, Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENDPOINT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELGATE_LEDGER_REMOTE", str(tmp_path / "nowhere.git"))
    monkeypatch.setenv("MODELGATE_LEDGER_DIR", str(tmp_path / "checkout"))
    result = CliRunner().invoke(audit_group, ["list"])
    assert result.exit_code == 2 and "no ledger at" in result.output and "Traceback" not in result.output

    run = runs["digits-cnn-signed"]
    evidence = version_stage(run.folder, request=run.request, decision=run.decision, run_id=run.run_id)
    assert evidence.status is Status.ERROR
    assert evidence.reason is not None and evidence.reason.startswith("no DVC remote:") and "\n" not in evidence.reason

    monkeypatch.setenv("MODELGATE_LEDGER", "off")
    skipped = version_stage(run.folder, request=run.request, decision=run.decision, run_id=run.run_id)
    assert skipped.status is Status.SKIPPED and "MODELGATE_LEDGER=off" in (skipped.reason or "")


def test_dvc_yaml_declares_the_intake_stages_and_their_evidence() -> None:
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = [s for s in pipeline["stages"] if s != "examples"]
    assert declared == list(PIPELINE)
    outs: list[str] = []
    for name in PIPELINE:
        stage = pipeline["stages"][name]
        assert stage["cmd"] == f"{STAGE_COMMAND} {name}"
        outs += [o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", [])]
    assert {f"{EVIDENCE_DIR}/{file}" for file in ["request.json", *EVIDENCE_FILES.values()]} <= set(outs)
    assert pipeline["stages"]["metrics"]["metrics"] == [{f"{EVIDENCE_DIR}/metrics.json": {"cache": False}}]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(IntakeRequest.model_fields) <= set(params["intake"])
    assert {"validation", "evaluate"} <= set(params)


def test_the_plain_dvc_walkthrough_of_the_docs(ledger: Ledger, runs: dict[str, Run], tmp_path: Path) -> None:
    """docs/audit.md's DVC-only commands, in a copy of the auditor's checkout."""
    checkout = Path(shutil.copytree(ledger.config.checkout, tmp_path / "ledger", symlinks=True))
    env = tool_env(ledger.config)
    signed, unsigned = (experiment_name(n, "1.0.0", r.run_id) for n, r in runs.items())
    shown = dvc(["exp", "show", "--no-pager", "--drop", ".*", "--keep", "Experiment|decision.approved"], checkout, env)
    assert signed in shown and unsigned in shown
    diff = dvc(["metrics", "diff", signed, unsigned], checkout, env)
    assert "decision.approved" in diff
    dvc(["exp", "pull", "origin", signed], checkout, env)
    dvc(["exp", "apply", signed], checkout, env)
    run = runs["digits-cnn-signed"]
    for name in EVIDENCE_FILES.values():
        assert (checkout / EVIDENCE_DIR / name).read_bytes() == (run.folder / name).read_bytes(), name
    git(["reset", "--hard"], checkout, env)
    git(["clean", "-fdqx", "evidence", "dvc.lock"], checkout, env)
    assert not git(["status", "--porcelain"], checkout, env).strip()
