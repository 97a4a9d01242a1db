"""The signed index against a real SeaweedFS: sequences, rollback, fork, tampering, revocation signals, migration.

The attacker here holds the S3 admin identity (can write anything in the bucket) but not the
organization signing key. Each test uses its own model names and, where it matters, its own
consumer state folder (a consumer that has, or has not, seen an index before).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelgate.evidence import sha256_bytes
from modelgate.registry import (
    PullRefused,
    RegistryConfig,
    RegistryError,
    VersionExists,
    layout,
    publish,
    pull,
    read_index,
    revoke,
    set_alias,
    sign_index,
)
from modelgate.registry.attestation import sign_envelope
from modelgate.registry.index import INDEX_PAYLOAD_TYPE, RegistryIndex, index_envelope, open_index
from modelgate.registry.signer import FileSigner, ensure_key_pair
from modelgate.signing.truststore import spki_pem
from tests.helpers.marks import starts_server
from tests.helpers.registry import (
    BUCKET,
    Intake,
    Registry,
    intake,
    policy_dir,
    random_files,
    registry_server,
    tree,
    unique,
)

pytestmark = pytest.mark.services
PUBLISH_MODULE = __import__("importlib").import_module("modelgate.registry.publish")


@pytest.fixture(scope="module")
@starts_server
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry_server(tmp_path_factory, tmp_path_factory.mktemp("keys")) as registry:
        yield registry


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_dir(tmp_path_factory.mktemp("policies"))


def _publish(reg: Registry, tmp: Path, policies: Path, name: str, version: str, seed: int = 0) -> Intake:
    item = intake(tmp / version, name, version, random_files({"w.bin": 1000 + seed}, seed), policies)
    publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    return item


def _two_versions(reg: Registry, tmp: Path, policies: Path) -> tuple[Intake, Intake]:
    name = unique("idx")
    return _publish(reg, tmp, policies, name, "1.0.0", 1), _publish(reg, tmp, policies, name, "2.0.0", 2)


def _consumer(reg: Registry, state: Path) -> RegistryConfig:
    """A consumer with its own state folder: ``state`` decides what it has seen before."""
    return reg.consumer.with_(state_dir=state)


def _pull(reg: Registry, config: RegistryConfig, ref: str, dest: Path, **kw: Any) -> Any:
    return pull(ref, None, dest, config=config, public_key=reg.public_key, **kw)


def _index_bytes(reg: Registry, name: str) -> bytes:
    return bytes(reg.admin_client().get_object(Bucket=BUCKET, Key=layout.index_key(name))["Body"].read())


def _put_index(reg: Registry, name: str, body: bytes) -> None:
    reg.admin_client().put_object(Bucket=BUCKET, Key=layout.index_key(name), Body=body)


def _payload(data: bytes) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(json.loads(data)["payload"])))


def _sequence(reg: Registry, name: str) -> int:
    return int(_payload(_index_bytes(reg, name))["sequence"])


def _refused(reg: Registry, config: RegistryConfig, ref: str, dest: Path) -> str:
    with pytest.raises(PullRefused) as refused:
        _pull(reg, config, ref, dest)
    assert not dest.exists(), "nothing reaches the destination"
    return refused.value.reason


# --------------------------------------------------------------------------- format and sequence


def test_every_change_re_signs_the_index_with_the_next_sequence(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, second = _two_versions(reg, tmp_path, policies)
    name = first.name
    data = _index_bytes(reg, name)
    envelope = json.loads(data)
    assert envelope["payloadType"] == INDEX_PAYLOAD_TYPE
    assert [s["keyid"] for s in envelope["signatures"]] == [reg.signer.key_id]
    index, _ = open_index(data, name, reg.public_key)
    assert index.sequence == 2 and index.signer_key_id == reg.signer.key_id, "one per publish"
    assert sorted(index.versions) == ["1.0.0", "2.0.0"]
    set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    assert _sequence(reg, name) == 3
    set_alias(name, "prod", "2.0.0", config=reg.publisher, signer=reg.signer)
    assert _sequence(reg, name) == 4
    revoke(name, "1.0.0", "bad tokenizer", config=reg.publisher, signer=reg.signer)
    assert _sequence(reg, name) == 5
    again = publish(**second.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert again.already_published and _sequence(reg, name) == 5, "a no-op change spends no sequence"
    verified, _ = read_index(reg.consumer.client(), BUCKET, name, reg.public_key)
    assert verified is not None and verified.versions["1.0.0"].revocation is not None
    assert verified.versions["1.0.0"].revocation.reason == "bad tokenizer"
    assert verified.aliases["prod"].version == "2.0.0"
    model = _pull(reg, _consumer(reg, tmp_path / "state"), f"{name}:prod", tmp_path / "out")
    assert model.version == "2.0.0" and model.index_sequence == 5


# --------------------------------------------------------------------------- rollback, fork, deletion


def test_a_replayed_older_signed_index_is_refused_as_a_rollback(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, second = _two_versions(reg, tmp_path, policies)
    name = first.name
    consumer = _consumer(reg, tmp_path / "state")
    set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    old = _index_bytes(reg, name)
    assert _pull(reg, consumer, f"{name}:prod", tmp_path / "a").version == "1.0.0"
    set_alias(name, "prod", "2.0.0", config=reg.publisher, signer=reg.signer)
    assert _pull(reg, consumer, f"{name}:prod", tmp_path / "b").version == "2.0.0"

    _put_index(reg, name, old)  # validly signed, only older: prod -> 1.0.0 again
    reason = _refused(reg, consumer, f"{name}:prod", tmp_path / "c")
    assert reason.startswith("index sequence 3 is older than the 4 already seen"), reason
    assert _refused(reg, consumer, f"{name}@2.0.0", tmp_path / "d") == reason, "any reference, not only aliases"

    # The documented limit: a consumer that never saw the newer index cannot tell ...
    newcomer = _consumer(reg, tmp_path / "fresh")
    assert _pull(reg, newcomer, f"{name}:prod", tmp_path / "e").version == "1.0.0"
    # ... unless it pins the sequence it was told to expect.
    with pytest.raises(PullRefused, match="index sequence 3 is older than the minimum 4 required"):
        _pull(reg, _consumer(reg, tmp_path / "pinned"), f"{name}:prod", tmp_path / "f", min_sequence=4)


def test_an_index_deleted_after_it_was_seen_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    consumer = _consumer(reg, tmp_path / "state")
    _pull(reg, consumer, f"{first.name}@1.0.0", tmp_path / "a")
    reg.admin_client().delete_object(Bucket=BUCKET, Key=layout.index_key(first.name))
    reason = _refused(reg, consumer, f"{first.name}@1.0.0", tmp_path / "b")
    assert reason == "index is missing, but sequence 2 was already seen"


def test_the_same_sequence_with_other_content_is_refused_as_a_fork(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    consumer = _consumer(reg, tmp_path / "state")
    _pull(reg, consumer, f"{name}@2.0.0", tmp_path / "a")
    index, _ = open_index(_index_bytes(reg, name), name, reg.public_key)
    # What only a holder of the key (a buggy writer, a stolen key) could make: another index at sequence 2.
    del index.versions["2.0.0"]
    _put_index(reg, name, index_envelope(index, reg.signer))
    reason = _refused(reg, consumer, f"{name}@1.0.0", tmp_path / "b")
    assert reason.startswith("index sequence 2 differs from the sequence 2 already seen (fork"), reason


# --------------------------------------------------------------------------- tampering and wrong keys


def test_an_edited_index_with_the_old_signature_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    set_alias(name, "prod", "2.0.0", config=reg.publisher, signer=reg.signer)
    envelope = json.loads(_index_bytes(reg, name))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["aliases"]["prod"]["version"] = "1.0.0"  # a consistent-looking lie
    envelope["payload"] = base64.b64encode(json.dumps(payload, sort_keys=True).encode()).decode()
    _put_index(reg, name, json.dumps(envelope).encode())
    reason = _refused(reg, _consumer(reg, tmp_path / "state"), f"{name}:prod", tmp_path / "out")
    assert reason.startswith("index signature invalid (not signed by the organization key"), reason


def test_an_index_signed_by_another_key_or_about_another_model_is_refused(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    other, _ = _two_versions(reg, tmp_path / "other", policies)
    rogue = FileSigner.from_file(ensure_key_pair(tmp_path / "rogue")[0])
    valid = _index_bytes(reg, first.name)
    index, _ = open_index(valid, first.name, reg.public_key)
    index.sequence += 10
    _put_index(reg, first.name, index_envelope(index, rogue))
    consumer = _consumer(reg, tmp_path / "state")
    reason = _refused(reg, consumer, f"{first.name}@1.0.0", tmp_path / "a")
    assert reason.startswith("index signature invalid (not signed by the organization key"), reason
    # A validly signed index moved to another model's path.
    _put_index(reg, other.name, valid)
    reason = _refused(reg, consumer, f"{other.name}@1.0.0", tmp_path / "b")
    assert reason == f"the index is about model {first.name!r}, not {other.name!r}"


def test_writers_never_re_sign_an_index_they_cannot_verify(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    consumer = _consumer(reg, tmp_path / "state")
    set_alias(name, "prod", "2.0.0", config=reg.publisher, signer=reg.signer)
    _pull(reg, consumer, f"{name}:prod", tmp_path / "a")  # sequence 3 seen
    forged = json.loads(_index_bytes(reg, name))
    forged["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    _put_index(reg, name, json.dumps(forged).encode())
    with pytest.raises(RegistryError, match=r"does not verify .*sign-index .* --rebuild"):
        set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    third = intake(tmp_path / "3", name, "3.0.0", random_files({"w.bin": 77}, 3), policies)
    with pytest.raises(RegistryError, match="does not verify"):
        publish(**third.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    listed = reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=f"models/{name}/3.0.0/")
    assert listed.get("KeyCount", 0) == 0, "refused before anything was written"

    with pytest.raises(RegistryError, match="--rebuild"):
        sign_index(name, config=reg.publisher, signer=reg.signer)
    done = sign_index(name, config=reg.publisher, signer=reg.signer, rebuild=True)
    assert done.found == "invalid" and done.index.sequence == 4, "above the sequence the forged index claimed"
    assert sorted(done.index.versions) == ["1.0.0", "2.0.0"] and done.index.aliases == {}, "aliases not trusted"
    assert _pull(reg, consumer, f"{name}@2.0.0", tmp_path / "b").index_sequence == 4


# --------------------------------------------------------------------------- revocation: either signal revokes


def test_deleting_the_revocation_mark_does_not_unrevoke(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    revoke(name, "1.0.0", "CVE-2099-0002", config=reg.publisher, signer=reg.signer, who="secops")
    reg.admin_client().delete_object(Bucket=BUCKET, Key=layout.revocation_key(name, "1.0.0"))
    consumer = _consumer(reg, tmp_path / "state")
    for ref in (f"{name}@1.0.0", f"{name}:prod"):
        assert _refused(reg, consumer, ref, tmp_path / "out") == f"version 1.0.0 of {name} is revoked: CVE-2099-0002"


def test_a_revocation_mark_the_index_does_not_have_still_revokes(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    mark = {"reason": "pulled by the vendor", "revoked_by": "ops", "revoked_at": "2030-01-01T00:00:00Z"}
    reg.admin_client().put_object(
        Bucket=BUCKET, Key=layout.revocation_key(first.name, "2.0.0"), Body=json.dumps(mark).encode()
    )
    reason = _refused(reg, _consumer(reg, tmp_path / "state"), f"{first.name}@2.0.0", tmp_path / "out")
    assert reason == f"version 2.0.0 of {first.name} is revoked: pulled by the vendor"


# --------------------------------------------------------------------------- the index ties versions to attestations


def test_a_committed_version_missing_from_the_index_is_refused_until_repaired(
    reg: Registry, tmp_path: Path, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    third = intake(tmp_path / "3", first.name, "3.0.0", random_files({"w.bin": 33}, 3), policies)

    def index_down(*args: Any, **kwargs: Any) -> None:
        raise RegistryError("index write failed")

    with monkeypatch.context() as patch:
        patch.setattr(PUBLISH_MODULE, "_record", index_down)
        with pytest.raises(RegistryError, match="is published but index.json was not updated"):
            publish(**third.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    consumer = _consumer(reg, tmp_path / "state")
    reason = _refused(reg, consumer, f"{first.name}@3.0.0", tmp_path / "a")
    assert reason == f"{first.name}@3.0.0 is not in the signed index (run its publish again to list it)"
    # A new intake run of the same model (the dead run cannot be re-run) is refused, and lists the version.
    rerun = intake(tmp_path / "3b", first.name, "3.0.0", random_files({"w.bin": 33}, 3), policies)
    with pytest.raises(VersionExists, match=f"already published by run {third.decision.run_id}"):
        publish(**rerun.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert tree(_pull(reg, consumer, f"{first.name}@3.0.0", tmp_path / "b").path) == tree(third.model_dir)
    again = publish(**third.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert again.already_published and again.attestation_digest == _attestation_digest(reg, first.name, "3.0.0")


def _attestation_digest(reg: Registry, name: str, version: str) -> str:
    body = reg.admin_client().get_object(Bucket=BUCKET, Key=layout.attestation_key(name, version))["Body"].read()
    return sha256_bytes(body)


def test_an_attestation_other_than_the_one_the_index_lists_is_refused(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    key = layout.attestation_key(first.name, "1.0.0")
    envelope = json.loads(reg.admin_client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["published_by"] = "someone-else"  # validly signed, but not the attestation indexed
    reg.admin_client().put_object(Bucket=BUCKET, Key=key, Body=sign_envelope(statement, reg.signer))
    reason = _refused(reg, _consumer(reg, tmp_path / "state"), f"{first.name}@1.0.0", tmp_path / "out")
    assert reason == "the attestation does not match the signed index"


# --------------------------------------------------------------------------- migration of unsigned indexes


def _unsigned(index: RegistryIndex) -> bytes:
    """What the old code wrote: the index as plain JSON, without sequence, key or signature."""
    return index.model_dump_json(indent=2, exclude={"sequence", "signer_key_id", "updated_by"}).encode()


def test_an_unsigned_index_is_refused_until_a_publisher_signs_it(reg: Registry, tmp_path: Path, policies: Path) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    set_alias(name, "staging", "2.0.0", config=reg.publisher, signer=reg.signer)
    revoke(name, "2.0.0", "bad weights", config=reg.publisher, signer=reg.signer)
    index, _ = open_index(_index_bytes(reg, name), name, reg.public_key)
    _put_index(reg, name, _unsigned(index))
    consumer = _consumer(reg, tmp_path / "state")
    reason = _refused(reg, consumer, f"{name}:prod", tmp_path / "a")
    assert reason == (
        f"index of {name} is not signed (written by an older modelgate): "
        f"a publisher signs it with `modelgate registry sign-index {name}`"
    )
    done = sign_index(name, config=reg.publisher, signer=reg.signer)
    assert done.written and done.found == "unsigned" and done.index.sequence == 1
    assert {a: e.version for a, e in done.index.aliases.items()} == {"prod": "1.0.0"}
    assert done.dropped_aliases == {"staging": "2.0.0 is revoked"}
    assert _pull(reg, consumer, f"{name}:prod", tmp_path / "b").version == "1.0.0"
    assert (
        _refused(reg, consumer, f"{name}@2.0.0", tmp_path / "c") == f"version 2.0.0 of {name} is revoked: bad weights"
    )
    assert not sign_index(name, config=reg.publisher, signer=reg.signer).written, "a signed index is left alone"


def test_the_next_write_signs_an_unsigned_index_keeping_its_aliases(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    set_alias(name, "prod", "1.0.0", config=reg.publisher, signer=reg.signer)
    index, _ = open_index(_index_bytes(reg, name), name, reg.public_key)
    _put_index(reg, name, _unsigned(index))
    third = _publish(reg, tmp_path, policies, name, "3.0.0", 3)
    signed, _ = read_index(reg.consumer.client(), BUCKET, name, reg.public_key)
    assert signed is not None and signed.sequence == 1
    assert sorted(signed.versions) == ["1.0.0", "2.0.0", "3.0.0"] and signed.aliases["prod"].version == "1.0.0"
    consumer = _consumer(reg, tmp_path / "state")
    assert _pull(reg, consumer, f"{name}:prod", tmp_path / "a").version == "1.0.0"
    assert _pull(reg, consumer, name, tmp_path / "b").root_digest == third.manifest.root_digest


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(reg: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    public = tmp_path / "org.pub"
    public.write_bytes(spki_pem(reg.public_key))
    state = tmp_path / "cli-state"
    for key, value in {
        "MODELGATE_S3_ENDPOINT": reg.server.endpoint_url,
        "MODELGATE_REGISTRY_BUCKET": BUCKET,
        "MODELGATE_REGISTRY_ACCESS_KEY": reg.publisher.access_key or "",
        "MODELGATE_REGISTRY_SECRET_KEY": reg.publisher.secret_key or "",
        "MODELGATE_ORG_PUBLIC_KEY_FILE": str(public),
        "MODELGATE_ORG_SIGNING_KEY_FILE": str(reg.publisher.signing_key_path),
        "MODELGATE_REGISTRY_STATE_DIR": str(state),
        "MODELGATE_ACTOR": "cli-user",
    }.items():
        monkeypatch.setenv(key, value)
    return state


def test_cli_ls_show_and_pull_refuse_a_rollback_in_one_line(
    reg: Registry, tmp_path: Path, policies: Path, cli_env: Path
) -> None:
    from modelgate.cli.registry import pull_command, registry_group

    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    runner = CliRunner()
    old = _index_bytes(reg, name)
    aliased = runner.invoke(registry_group, ["alias", name, "prod", "1.0.0"])
    assert aliased.exit_code == 0, aliased.output
    shown = runner.invoke(registry_group, ["show", name])
    assert shown.exit_code == 0 and "index verified: sequence 3" in shown.output, shown.output
    _put_index(reg, name, old)
    for args, command in (
        (["ls", name], registry_group),
        (["show", name], registry_group),
        (["show", f"{name}@1.0.0"], registry_group),
        ([f"{name}@1.0.0", "--dest", str(tmp_path / "out")], pull_command),
    ):
        result = runner.invoke(command, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.strip() == (
            f"refused: refusing the index of {name}: index sequence 2 is older than the 3 already seen "
            "(rollback: an older signed index was put back)"
        )
    listing = runner.invoke(registry_group, ["ls"])
    assert listing.exit_code == 1 and f"refusing the index of {name}" in listing.output, "ls of all models too"


def test_cli_sign_index_and_markup_in_untrusted_text(
    reg: Registry, tmp_path: Path, policies: Path, cli_env: Path
) -> None:
    from modelgate.cli.registry import pull_command, registry_group

    first, _ = _two_versions(reg, tmp_path, policies)
    name = first.name
    runner = CliRunner()
    reason = "[red]x[/red] [link=http://evil]y[/link]"
    assert runner.invoke(registry_group, ["revoke", name, "2.0.0", "--reason", reason]).exit_code == 0
    index, _ = open_index(_index_bytes(reg, name), name, reg.public_key)
    _put_index(reg, name, _unsigned(index))
    refused = runner.invoke(pull_command, [f"{name}@1.0.0", "--dest", str(tmp_path / "a")])
    assert refused.exit_code == 1 and f"modelgate registry sign-index {name}" in refused.output
    signed = runner.invoke(registry_group, ["sign-index", name])
    assert signed.exit_code == 0, signed.output
    assert f"{name}: signed the unsigned index at sequence 1: 2 version(s)" in signed.output
    listed = runner.invoke(registry_group, ["ls", name])
    assert listed.exit_code == 0 and reason in listed.output, listed.output
    revoked = runner.invoke(pull_command, [f"{name}@2.0.0", "--dest", str(tmp_path / "b")])
    assert revoked.exit_code == 1
    assert (
        revoked.output.strip()
        == f"refused: version 2.0.0 of {name} is revoked: {reason} (--allow-revoked pulls it anyway)"
    )
    again = runner.invoke(registry_group, ["sign-index", name])
    assert again.exit_code == 0 and "already signed (sequence 1)" in again.output


def test_pull_min_sequence_option(reg: Registry, tmp_path: Path, policies: Path, cli_env: Path) -> None:
    from modelgate.cli.registry import pull_command

    first, _ = _two_versions(reg, tmp_path, policies)
    runner = CliRunner()
    too_new = runner.invoke(pull_command, [f"{first.name}@1.0.0", "--dest", str(tmp_path / "a"), "--min-sequence", "3"])
    assert too_new.exit_code == 1 and "older than the minimum 3 required" in too_new.output
    ok = runner.invoke(pull_command, [f"{first.name}@1.0.0", "--dest", str(tmp_path / "b"), "--min-sequence", "2"])
    assert ok.exit_code == 0, ok.output
    assert tree(tmp_path / "b") == tree(first.model_dir)
