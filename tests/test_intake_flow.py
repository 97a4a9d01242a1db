"""The intake flow end to end against a real Prefect server, on the example models."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelgate.request import IntakeRequest
from tests.helpers.server_records import task_runs

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def intake(prefect_server: str):  # noqa: ANN201 - the flow object
    from flows.intake import intake as flow

    return flow


def _decision(outcome) -> dict:  # noqa: ANN001
    return json.loads((Path(outcome.evidence_dir) / "decision.json").read_text())


def test_signed_example_is_approved_with_complete_evidence(intake, examples: dict[str, Path]) -> None:
    outcome = intake(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="digits-cnn", version="1.0.0"))
    assert outcome.decision == "approved", outcome.reasons
    folder = Path(outcome.evidence_dir)
    for name in ("request", "fetch", "manifest", "signature", "provenance", "gate", "decision"):
        assert (folder / f"{name}.json").is_file(), name
    decision = _decision(outcome)
    assert decision["decision"] == "approved"
    assert decision["model"]["root_digest"] == outcome.root_digest
    # Every evidence digest in the decision is the digest of the file on disk.
    for filename, digest in decision["evidence"].items():
        assert digest == "sha256:" + hashlib.sha256((folder / filename).read_bytes()).hexdigest(), filename
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["metrics"]["signature.status"] == "verified"
    assert signature["metrics"]["signature.signer"] == "demo-publisher"


def test_unsigned_example_is_rejected_naming_the_rule(intake, examples: dict[str, Path]) -> None:
    outcome = intake(IntakeRequest(source=str(examples["digits-cnn-unsigned"]), name="digits-cnn", version="1.0.1"))
    assert outcome.decision == "rejected"
    assert any("signature-verified" in reason for reason in outcome.reasons), outcome.reasons
    verdicts = {v["id"]: v for v in _decision(outcome)["rules"]}
    assert verdicts["signature-verified"]["passed"] is False
    assert verdicts["signature-verified"]["observed"]["signature.status"] == "unsigned"


def test_tampered_example_is_rejected_naming_the_changed_file(intake, examples: dict[str, Path]) -> None:
    outcome = intake(IntakeRequest(source=str(examples["digits-cnn-tampered"]), name="digits-cnn", version="1.0.2"))
    assert outcome.decision == "rejected"
    signature = json.loads((Path(outcome.evidence_dir) / "signature.json").read_text())
    assert signature["metrics"]["signature.status"] == "invalid"
    assert "model.safetensors" in json.dumps(signature["details"])


def test_pin_mismatch_rejects(intake, examples: dict[str, Path]) -> None:
    wrong = "sha256:" + "0" * 64
    request = IntakeRequest(
        source=str(examples["digits-cnn-signed"]), name="digits-cnn", version="1.0.3", expected_digest=wrong
    )
    outcome = intake(request)
    assert outcome.decision == "rejected"
    assert outcome.stages["manifest"] == "fail"


def test_missing_source_is_an_error_and_the_gate_fails_closed(intake, tmp_path: Path) -> None:
    outcome = intake(IntakeRequest(source=str(tmp_path / "nope"), name="ghost", version="1.0.0"))
    assert outcome.decision == "error"
    assert outcome.stages["fetch"] == "error"
    assert outcome.stages["manifest"] == "skipped"
    decision = _decision(outcome)
    assert decision["decision"] == "error"  # the record agrees with the CLI: a stage errored
    assert decision["reasons"][0].startswith("stage fetch errored")


def test_run_is_recorded_on_the_prefect_server(intake, examples: dict[str, Path], prefect_server: str) -> None:
    from prefect.client.orchestration import get_client

    outcome = intake(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="digits-cnn", version="1.1.0"))

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(outcome.run_id).state_name
    tasks = {run.name for run in task_runs(outcome.run_id)}
    assert state == "Completed"
    assert {"fetch", "manifest", "signature", "provenance", "gate"} <= set(tasks)


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "modelgate.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_exit_codes(examples: dict[str, Path], prefect_server: str, tmp_path: Path) -> None:
    approved = _cli("intake", str(examples["digits-cnn-signed"]), "--name", "cli-model", "--version", "1", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["decision"] == "approved"
    rejected = _cli("intake", str(examples["digits-cnn-unsigned"]), "--name", "cli-model", "--version", "2")
    assert rejected.returncode == 1, rejected.stderr
    assert "signature-verified" in rejected.stderr
    missing = _cli("intake", str(tmp_path / "nope"), "--name", "cli-model", "--version", "3")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    bad = _cli("intake", "ftp://x/y", "--name", "cli-model", "--version", "4")
    assert bad.returncode == 2
    assert "unsupported source scheme" in bad.stderr
    assert "Traceback" not in bad.stderr
