"""Re-gating the registry against a real SeaweedFS: policy changes and expired waivers revoke entries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelgate.registry import PullRefused, layout, publish, pull, read_index, regate_registry
from modelgate.signing.truststore import spki_pem
from tests.helpers.marks import starts_server
from tests.helpers.registry import (
    BUCKET,
    PERMISSIVE_POLICY,
    Intake,
    Registry,
    intake,
    policy_dir,
    random_files,
    registry_server,
    unique,
)

pytestmark = pytest.mark.services

MIT_CARD = b"---\nlicense: mit\n---\n# MIT model\n"


@pytest.fixture(scope="module")
@starts_server
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry_server(tmp_path_factory, tmp_path_factory.mktemp("keys")) as registry:
        yield registry


def _publish(reg: Registry, folder: Path, policies: Path, name: str, *, mit: bool = False) -> Intake:
    files = random_files({"w.bin": 4096}, seed=len(name))
    if mit:
        files["README.md"] = MIT_CARD
    item = intake(folder, name, "1.0.0", files, policies)
    assert item.decision.approved, item.decision.reasons
    publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    return item


def _apache_only(policies: Path) -> None:
    """The policy change: MIT is no longer on the licence allowlist."""
    path = policies / "registry-test.yaml"
    path.write_text(PERMISSIVE_POLICY.replace("[apache-2.0, mit]", "[apache-2.0]"))


def _waiver(policies: Path, digest: str, expires: datetime) -> None:
    (policies / "waivers").mkdir(exist_ok=True)
    (policies / "waivers" / "mit-ok.yaml").write_text(
        "apiVersion: modelgate.dev/v1\nkind: PolicyWaiver\nmetadata:\n  name: mit-ok\nspec:\n"
        "  policy: registry-test\n  rules: [license-allowed]\n"
        f'  modelDigest: "{digest}"\n  justification: Legal reviewed the MIT terms.\n'
        f'  approver: legal@example.org\n  expires: "{expires:%Y-%m-%dT%H:%M:%SZ}"\n'
    )


def test_policy_change_revokes_only_entries_that_no_longer_pass(reg: Registry, tmp_path: Path) -> None:
    policies = policy_dir(tmp_path / "policies")
    apache = _publish(reg, tmp_path / "a", policies, unique("apache"))
    mit = _publish(reg, tmp_path / "b", policies, unique("mit"), mit=True)
    names = [apache.name, mit.name]
    common = {"config": reg.publisher, "policy_dir": policies, "public_key": reg.public_key, "names": names}

    unchanged = regate_registry(**common)
    assert [e.status for e in unchanged.entries] == ["pass", "pass"]

    _apache_only(policies)
    dry = regate_registry(**common, dry_run=True)
    assert {e.name: e.status for e in dry.entries} == {apache.name: "pass", mit.name: "fail"}
    assert pull(mit.name, "1.0.0", tmp_path / "still", config=reg.consumer, public_key=reg.public_key)

    report = regate_registry(**common)
    statuses = {e.name: e for e in report.entries}
    assert statuses[apache.name].status == "pass"
    assert statuses[mit.name].status == "revoked"
    assert "license-allowed" in statuses[mit.name].reason
    assert statuses[mit.name].reason.startswith("re-gate under policy registry-test (sha256:")
    with pytest.raises(PullRefused) as refused:
        pull(mit.name, "1.0.0", tmp_path / "out", config=reg.consumer, public_key=reg.public_key)
    assert refused.value.reason.startswith(f"version 1.0.0 of {mit.name} is revoked: re-gate under policy")
    index, _ = read_index(reg.consumer.client(), BUCKET, mit.name, reg.public_key)
    assert index is not None and index.versions["1.0.0"].revoked
    assert index.versions["1.0.0"].revocation and index.versions["1.0.0"].revocation.revoked_by == "modelgate-regate"
    again = regate_registry(**common)
    assert {e.name: e.status for e in again.entries}[mit.name] == "skipped", "revoked entries are not re-judged"


def test_an_expired_waiver_revokes_the_entry_it_covered(reg: Registry, tmp_path: Path) -> None:
    policies = policy_dir(tmp_path / "policies")
    mit = _publish(reg, tmp_path / "m", policies, unique("waived"), mit=True)
    _apache_only(policies)
    expires = datetime.now(UTC) + timedelta(days=30)
    _waiver(policies, mit.manifest.root_digest, expires)
    common = {"config": reg.publisher, "policy_dir": policies, "public_key": reg.public_key, "names": [mit.name]}
    assert regate_registry(**common).entries[0].status == "pass"
    later = regate_registry(**common, now=expires + timedelta(seconds=1))
    assert later.entries[0].status == "revoked" and "license-allowed" in later.entries[0].reason


def test_altered_stored_evidence_is_an_error_not_a_verdict(reg: Registry, tmp_path: Path) -> None:
    policies = policy_dir(tmp_path / "policies")
    item = _publish(reg, tmp_path / "e", policies, unique("evidence"))
    key = layout.evidence_key(item.name, "1.0.0", "provenance.json")
    client = reg.admin_client()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body.replace(b"apache-2.0", b"apache-3.0"))
    report = regate_registry(config=reg.publisher, policy_dir=policies, public_key=reg.public_key, names=[item.name])
    entry = report.entries[0]
    assert entry.status == "error"
    assert entry.reason == "evidence provenance.json is missing or does not match the decision record"


def test_regate_runs_as_a_prefect_flow(
    reg: Registry, tmp_path: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.regate import regate

    policies = policy_dir(tmp_path / "policies")
    mit = _publish(reg, tmp_path / "f", policies, unique("flow"), mit=True)
    _apache_only(policies)
    public = tmp_path / "org.pub"
    public.write_bytes(spki_pem(reg.public_key))
    for key, value in {
        "MODELGATE_S3_ENDPOINT": reg.server.endpoint_url,
        "MODELGATE_REGISTRY_BUCKET": BUCKET,
        "MODELGATE_REGISTRY_ACCESS_KEY": reg.publisher.access_key or "",
        "MODELGATE_REGISTRY_SECRET_KEY": reg.publisher.secret_key or "",
        "MODELGATE_ORG_PUBLIC_KEY_FILE": str(public),
        "MODELGATE_ORG_SIGNING_KEY_FILE": str(reg.publisher.signing_key_path),  # revoking re-signs the index
    }.items():
        monkeypatch.setenv(key, value)
    report = regate(policy_dir=str(policies), names=[mit.name])
    assert [(e.name, e.status) for e in report.entries] == [(mit.name, "revoked")]
    with pytest.raises(PullRefused, match="is revoked"):
        pull(mit.name, "1.0.0", tmp_path / "out", config=reg.consumer, public_key=reg.public_key)


def test_publish_task_in_a_flow_publishes_and_retries_transient_errors(
    reg: Registry, tmp_path: Path, prefect_server: str
) -> None:
    from prefect import flow

    from modelgate.evidence import Status
    from modelgate.s3 import make_s3_client
    from tasks.publish import publish_task

    policies = policy_dir(tmp_path / "policies")
    item = intake(tmp_path / "t", unique("task"), "1.0.0", random_files({"w.bin": 4096}), policies)
    calls: list[int] = []
    unreachable = make_s3_client("http://127.0.0.1:9", "k", "s", max_attempts=1, connect_timeout=1)
    unreachable.meta.events.register("before-parameter-build.s3.GetObject", lambda **_: calls.append(1))
    fast = publish_task.with_options(retry_delay_seconds=0)

    @flow
    def publish_flow(client: object) -> object:
        return fast(
            item.decision,
            item.model_dir,
            item.manifest,
            item.evidence_dir,
            config=reg.publisher,
            signer=reg.signer,
            client=client,
        )

    failed = publish_flow(unreachable)
    assert failed.status is Status.ERROR and failed.details["retryable"] is True
    assert len(calls) == 3, "two retries, then the error is returned as evidence"
    published = publish_flow(None)
    assert published.status is Status.PASS, published.reason
    assert pull(item.name, "1.0.0", tmp_path / "out", config=reg.consumer, public_key=reg.public_key)
