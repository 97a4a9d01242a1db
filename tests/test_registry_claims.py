"""Publish claims: a killed publish does not lock its version, a live one is never taken over.

Real processes against a real SeaweedFS: a child publish is paused inside its first model-file
upload (a botocore hook that only the child installs, tests/helpers/registry.py), then
killed with SIGKILL or left alive while other processes try the same version.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelgate.process_owner import Owner, process_stat, this_owner
from modelgate.registry import RegistryConfig, RegistryError, VersionExists, layout, publish, pull, read_index
from modelgate.registry.claim import _LIVE, _LIVE_LOCK, Claim, dead_owner
from tests.helpers.marks import starts_server
from tests.helpers.registry import (
    BUCKET,
    Intake,
    MiB,
    Registry,
    intake,
    policy_dir,
    random_files,
    registry_server,
    start_child_publish,
    tree,
    unique,
)

SIZES = {"model.safetensors": 6 * MiB + 11, "config.json": 300}


@pytest.fixture(scope="module")
@starts_server
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry_server(tmp_path_factory, tmp_path_factory.mktemp("keys")) as registry:
        yield registry


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_dir(tmp_path_factory.mktemp("policies"))


def _intake(folder: Path, policies: Path, name: str, seed: int = 0) -> Intake:
    """An intake run of its own (its own run id); the same seed gives the same files, so the same root digest."""
    return intake(folder, name, "1.0.0", random_files(SIZES, seed), policies)


def _claim_of(reg: Registry, name: str) -> tuple[Claim, datetime]:
    response = reg.admin_client().get_object(Bucket=BUCKET, Key=layout.claim_key(name, "1.0.0"))
    return Claim.model_validate_json(response["Body"].read()), response["LastModified"]


def _committed(reg: Registry, name: str) -> bool:
    listed = reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=layout.attestation_key(name, "1.0.0"))
    return bool(listed.get("KeyCount"))


def _pull(reg: Registry, name: str, dest: Path) -> Any:
    return pull(f"{name}@1.0.0", None, dest, config=reg.consumer, public_key=reg.public_key)


# --------------------------------------------------------------------------- kill -9, then the same command again


@pytest.mark.services
def test_a_publish_killed_with_sigkill_is_taken_over_at_once_by_a_new_run(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    name = unique("killed")
    victim = _intake(tmp_path / "victim", policies, name)
    child = start_child_publish(reg, victim, tmp_path / "child-1", lease_s=600, pause=True)
    child.wait_paused()
    held, _ = _claim_of(reg, name)
    assert held.owner is not None and held.owner.pid == child.proc.pid and held.owner.pid_start is not None
    assert held.run_id == victim.decision.run_id and held.lease_s == 600
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait(timeout=30)
    assert not _committed(reg, name)

    # The same command again: a new intake run (new run id), same model, same root digest, new process.
    rerun = _intake(tmp_path / "rerun", policies, name)
    assert rerun.decision.run_id != victim.decision.run_id
    assert rerun.manifest.root_digest == victim.manifest.root_digest
    start = time.monotonic()
    result = start_child_publish(reg, rerun, tmp_path / "child-2", lease_s=600, pause=False).result()
    assert time.monotonic() - start < 60, "no waiting for the 600 s lease"
    assert (
        result["claim_taken_over"] == f"its owner is dead: process {child.proc.pid} on {held.owner.host} is not running"
    )
    model = _pull(reg, name, tmp_path / "out")
    assert tree(model.path) == tree(rerun.model_dir)
    index, _ = read_index(reg.consumer.client(), BUCKET, name, reg.public_key)
    assert index is not None and index.versions["1.0.0"].run_id == rerun.decision.run_id
    listed = reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=f"models/{name}/1.0.0/files/")
    assert sorted(k["Key"].split("/files/")[1] for k in listed["Contents"]) == sorted(
        e.path for e in rerun.manifest.files
    )


# --------------------------------------------------------------------------- a live publish keeps its claim


@pytest.mark.services
def test_a_stalled_but_live_publish_keeps_its_claim_while_it_heartbeats(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    name = unique("live")
    owner = _intake(tmp_path / "owner", policies, name, seed=1)
    child = start_child_publish(reg, owner, tmp_path / "child", lease_s=3, pause=True)
    try:
        child.wait_paused()
        other = _intake(tmp_path / "other", policies, name, seed=2)
        config = reg.publisher.with_(claim_lease_s=3)
        _, first_renewal = _claim_of(reg, name)
        deadline = time.monotonic() + 8  # well past the 3 s lease: only the heartbeats keep the claim fresh
        attempts = 0
        while time.monotonic() < deadline:
            with pytest.raises(VersionExists, match=rf"is being published by run {owner.decision.run_id} \(pid"):
                publish(**other.publish_kwargs(), config=config, signer=reg.signer)
            attempts += 1
            time.sleep(1)
        held, last_renewal = _claim_of(reg, name)
        assert attempts >= 6 and held.run_id == owner.decision.run_id
        assert (last_renewal - first_renewal).total_seconds() >= 5, "the claim was renewed while the upload stalled"
        assert held.heartbeat_at is not None and held.heartbeat_at > held.started_at
    finally:
        child.resume()
    result = child.result()
    assert result["claim_taken_over"] is None
    assert _pull(reg, name, tmp_path / "out").root_digest == owner.manifest.root_digest


@pytest.mark.services
def test_an_expired_lease_is_taken_over_by_anyone(reg: Registry, tmp_path: Path, policies: Path) -> None:
    name = unique("expired")
    now = datetime.now(UTC)
    elsewhere = Claim(
        token="t-elsewhere",
        run_id="run-on-another-host",
        root_digest="sha256:" + "00" * 32,
        actor="ci",
        started_at=now,
        heartbeat_at=now,
        lease_s=3,
        owner=Owner(host="far-away", host_id="another-host-id", pid=1, pid_start=1),
    )
    key = layout.claim_key(name, "1.0.0")
    reg.admin_client().put_object(Bucket=BUCKET, Key=key, Body=elsewhere.model_dump_json().encode())
    item = _intake(tmp_path, policies, name, seed=3)
    config = reg.publisher.with_(claim_lease_s=3)
    with pytest.raises(VersionExists, match=r"is being published by run run-on-another-host \(pid 1 on far-away"):
        publish(**item.publish_kwargs(), config=config, signer=reg.signer)
    time.sleep(4.5)  # no renewal for longer than its lease (measured by the server's clock)
    result = publish(**item.publish_kwargs(), config=config, signer=reg.signer)
    assert result.claim_taken_over is not None and result.claim_taken_over.startswith("its lease expired"), result
    assert _pull(reg, name, tmp_path / "out").root_digest == item.manifest.root_digest
    assert not [t for t in threading.enumerate() if t.name == "modelgate-claim-heartbeat"], "heartbeats stopped"

    # A claim of the old format (no owner, no lease) waits out the taker's lease.
    old = unique("old-claim")
    reg.admin_client().put_object(
        Bucket=BUCKET,
        Key=layout.claim_key(old, "1.0.0"),
        Body=json.dumps(
            {"token": "x", "run_id": "old", "root_digest": "", "actor": "?", "started_at": now.isoformat()}
        ),
    )
    legacy = _intake(tmp_path / "old", policies, old, seed=4)
    with pytest.raises(VersionExists, match="by run old"):
        publish(**legacy.publish_kwargs(), config=config, signer=reg.signer)
    time.sleep(4.5)
    assert publish(**legacy.publish_kwargs(), config=config, signer=reg.signer).claim_taken_over


@pytest.mark.services
def test_a_publish_whose_claim_was_taken_does_not_commit(reg: Registry, tmp_path: Path, policies: Path) -> None:
    """Its heartbeat finds someone else's claim (its lease ran out, say): it stops and writes no attestation."""
    name = unique("lost")
    item = _intake(tmp_path, policies, name, seed=5)
    config = reg.publisher.with_(claim_lease_s=3, workers=1)
    client = config.client()
    paused, resume = threading.Event(), threading.Event()

    def hold(params: dict[str, Any], **_: Any) -> None:
        if "/files/" in str(params.get("Key", "")):
            paused.set()
            resume.wait(30)

    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-parameter-build.s3.{operation}", hold)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            publish(**item.publish_kwargs(), config=config, client=client, signer=reg.signer)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the outcome is the assertion
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert paused.wait(30)
    claim, _ = _claim_of(reg, name)
    usurper = claim.model_copy(update={"token": "someone-else", "run_id": "usurper"})
    reg.admin_client().put_object(
        Bucket=BUCKET, Key=layout.claim_key(name, "1.0.0"), Body=usurper.model_dump_json().encode()
    )
    time.sleep(2)  # at least one heartbeat (every 0.5 s) finds the claim changed
    resume.set()
    thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], VersionExists), outcome
    assert "another publish took over the claim" in str(outcome[0])
    assert not _committed(reg, name)
    assert _claim_of(reg, name)[0].run_id == "usurper", "the loser does not delete the new holder's claim"


# --------------------------------------------------------------------------- who is provably dead (no server)


def _claim(owner: Owner, token: str = "t") -> Claim:
    now = datetime.now(UTC)
    return Claim(token=token, run_id="r", root_digest="", actor="a", started_at=now, owner=owner)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_dead_owner_is_only_a_provably_dead_process_on_this_host() -> None:
    me = this_owner()
    assert me.host_id and me.pid_start is not None
    proc = _sleeper()
    try:
        found = process_stat(proc.pid)
        assert found is not None
        live = Owner(host=me.host, host_id=me.host_id, pid=proc.pid, pid_start=found[1])
        assert dead_owner(_claim(live)) is None, "a running process is alive"
        reused = live.model_copy(update={"pid_start": found[1] - 1})
        assert (
            dead_owner(_claim(reused))
            == f"process {proc.pid} on {me.host} is a different process now (the pid was reused)"
        )
        elsewhere = live.model_copy(update={"host_id": "another-host"})
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (process_stat(proc.pid) or ("?", 0))[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert dead_owner(_claim(live)) == f"process {proc.pid} on {me.host} has exited", "a zombie is dead"
        assert dead_owner(_claim(elsewhere)) is None, "another host (or container) cannot be judged from here"
    finally:
        proc.kill()
        proc.wait()
    assert dead_owner(_claim(live)) == f"process {proc.pid} on {me.host} is not running"
    assert dead_owner(_claim(live.model_copy(update={"host_id": ""}))) is None, "no host id: no judgment"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_this_process_is_dead_only_for_tokens_it_no_longer_runs() -> None:
    me = this_owner()
    with _LIVE_LOCK:
        _LIVE.add("running-here")
    try:
        assert dead_owner(_claim(me, "running-here")) is None
        assert (
            dead_owner(_claim(me, "finished"))
            == f"process {me.pid} on {me.host} (this process) no longer runs that publish"
        )
    finally:
        with _LIVE_LOCK:
            _LIVE.discard("running-here")


def test_the_claim_lease_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RegistryConfig().claim_lease_s == 60 and RegistryConfig().heartbeat_s == 10
    assert RegistryConfig(claim_lease_s=3).heartbeat_s == 0.5
    for bad in ("soon", "nan", "inf", "1", "100000"):
        monkeypatch.setenv("MODELGATE_REGISTRY_CLAIM_LEASE_S", bad)
        with pytest.raises(RegistryError, match=rf"MODELGATE_REGISTRY_CLAIM_LEASE_S='{bad}': expected a number"):
            RegistryConfig.from_env()
    monkeypatch.setenv("MODELGATE_REGISTRY_CLAIM_LEASE_S", "20")
    assert RegistryConfig.from_env().claim_lease_s == 20
    monkeypatch.setenv("MODELGATE_REGISTRY_WORKERS", "0")
    with pytest.raises(RegistryError, match="MODELGATE_REGISTRY_WORKERS='0': expected a whole number of at least 1"):
        RegistryConfig.from_env()
    with pytest.raises(RegistryError, match="claim_lease_s must be between 3 and 86400 seconds, not 0"):
        RegistryConfig(claim_lease_s=0)
