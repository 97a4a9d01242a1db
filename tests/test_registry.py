"""The registry against a real SeaweedFS: publish, verified pull, tampering, identities, races, resume.

One ``weed mini`` serves the module, with the publisher and consumer identities of
infra/local/s3-identities.json; every test uses its own model name.
"""

from __future__ import annotations

import base64
import importlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from click.testing import CliRunner

from modelgate.registry import (
    NotFound,
    PublishRefused,
    PullRefused,
    RegistryError,
    RegistryUnavailable,
    VersionExists,
    layout,
    publish,
    pull,
    read_index,
    revoke,
    set_alias,
    sign_index,
)
from modelgate.registry.signer import FileSigner
from tests.helpers.marks import starts_server
from tests.helpers.registry import (
    BUCKET,
    Intake,
    MiB,
    Registry,
    file_mode,
    intake,
    policy_dir,
    random_files,
    registry_server,
    tree,
    unique,
)

pytestmark = pytest.mark.services
PUBLISH_MODULE = importlib.import_module("modelgate.registry.publish")  # the package re-exports the function


@pytest.fixture(scope="module")
@starts_server
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry_server(tmp_path_factory, tmp_path_factory.mktemp("keys")) as registry:
        yield registry


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_dir(tmp_path_factory.mktemp("policies"))


def _intake(tmp: Path, policies: Path, name: str | None = None, version: str = "1.0.0", **kw: Any) -> Intake:
    sizes = kw.pop("sizes", {"model.safetensors": 6 * MiB + 7, "config.json": 300})
    return intake(tmp, name or unique("m"), version, random_files(sizes, kw.pop("seed", 0)), policies, **kw)


def _published(reg: Registry, tmp: Path, policies: Path, **kw: Any) -> Intake:
    item = _intake(tmp, policies, **kw)
    publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    return item


def _pull(reg: Registry, name: str, ref: str | None, dest: Path, **kw: Any) -> Any:
    return pull(name, ref, dest, config=kw.pop("config", reg.consumer), public_key=reg.public_key, **kw)


def _edit(reg: Registry, key: str, change: Any) -> None:
    """Rewrite an object in the bucket as an attacker with write access would."""
    client = reg.admin_client()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=change(body))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --------------------------------------------------------------------------- what SeaweedFS supports


def test_seaweedfs_honours_conditional_writes(reg: Registry) -> None:
    client = reg.publisher.client()
    client.put_object(Bucket=BUCKET, Key="probe/once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        client.put_object(Bucket=BUCKET, Key="probe/once", Body=b"2", IfNoneMatch="*")
    assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
    etag = client.head_object(Bucket=BUCKET, Key="probe/once")["ETag"]
    client.put_object(Bucket=BUCKET, Key="probe/once", Body=b"3", IfMatch=etag)
    with pytest.raises(ClientError) as stale:
        client.put_object(Bucket=BUCKET, Key="probe/once", Body=b"4", IfMatch=etag)
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=BUCKET, Key="probe/once")["Body"].read() == b"3"


def test_consumer_identity_cannot_write_but_can_pull(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"model.safetensors": 1000})
    consumer = reg.consumer.client()
    for attempt in (
        lambda: consumer.put_object(Bucket=BUCKET, Key=f"models/{item.name}/9.9.9/attestation.json", Body=b"x"),
        lambda: consumer.delete_object(Bucket=BUCKET, Key=layout.attestation_key(item.name, item.version)),
    ):
        with pytest.raises(ClientError) as denied:
            attempt()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(RegistryError, match="access denied"):
        revoke(item.name, item.version, "not allowed", config=reg.consumer)
    with pytest.raises(RegistryError, match="access denied"):
        publish(
            **_intake(tmp_path / "b", policies, name=item.name, version="2.0").publish_kwargs(),
            config=reg.consumer,
            signer=reg.signer,
        )
    assert _pull(reg, item.name, item.version, tmp_path / "out").root_digest == item.manifest.root_digest


# --------------------------------------------------------------------------- round trip


def test_round_trip_verifies_and_moves_into_place(reg: Registry, tmp_path: Path, policies: Path) -> None:
    sizes = {"model.safetensors": 11 * MiB + 7, "sub/dir/tokenizer.json": 4096, "empty.bin": 0}
    item = _intake(tmp_path, policies, sizes=sizes)
    result = publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert result.uri == f"s3://{BUCKET}/models/{item.name}/1.0.0/"
    index, _ = read_index(reg.consumer.client(), BUCKET, item.name, reg.public_key)
    assert index is not None
    entry = index.versions["1.0.0"]
    assert (entry.decision, entry.policy, entry.root_digest) == ("approved", "registry-test", item.manifest.root_digest)
    assert entry.revoked is False and entry.attestation_digest == result.attestation_digest

    seen: list[tuple[int, int]] = []
    dest = tmp_path / "consumer" / "digits"
    model = _pull(reg, f"{item.name}@1.0.0", None, dest, on_progress=lambda d, t: seen.append((d, t)))
    assert tree(dest) == tree(item.model_dir)
    assert model.root_digest == item.manifest.root_digest and model.decision.decision == "approved"
    assert model.downloaded_bytes == item.manifest.total_bytes and model.reused_bytes == 0
    assert seen[-1] == (item.manifest.total_bytes, item.manifest.total_bytes)
    assert not (dest.parent / ".digits.partial").exists(), "the staging folder is removed after the move"
    # What was published is what the decision approved, plus the stored evidence.
    keys = {
        k["Key"] for k in reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=f"models/{item.name}/")["Contents"]
    }
    assert f"models/{item.name}/1.0.0/evidence/decision.json" in keys
    assert f"models/{item.name}/1.0.0/files/sub/dir/tokenizer.json" in keys


def test_pull_refuses_an_existing_non_empty_destination(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError, match="exists and is not empty"):
        _pull(reg, item.name, "1.0.0", tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert _pull(reg, item.name, "1.0.0", tmp_path / "empty").file_count == 2


def test_two_pulls_into_one_destination_do_not_mix(reg: Registry, tmp_path: Path, policies: Path) -> None:
    import fcntl
    import os

    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    partial = tmp_path / ".out.partial"
    partial.mkdir()
    fd = os.open(partial / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RegistryError, match="another pull into .* is running"):
            _pull(reg, item.name, "1.0.0", tmp_path / "out")
    finally:
        os.close(fd)
    assert _pull(reg, item.name, "1.0.0", tmp_path / "out").file_count == 2


def test_only_approved_decisions_are_published(reg: Registry, tmp_path: Path) -> None:
    strict = policy_dir(tmp_path / "strict", strict=True)
    item = _intake(tmp_path, strict)
    assert item.decision.decision == "rejected"
    with pytest.raises(PublishRefused, match="only approved models are published"):
        publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    with pytest.raises(NotFound, match="not in the registry"):
        _pull(reg, item.name, "1.0.0", tmp_path / "out")


def test_unknown_model_version_and_alias_are_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    with pytest.raises(NotFound, match="nothing-here is not in the registry"):
        _pull(reg, "nothing-here", None, tmp_path / "a")
    with pytest.raises(NotFound, match=rf"{item.name}@7.7.7 is not in the registry"):
        _pull(reg, item.name, "7.7.7", tmp_path / "b")
    with pytest.raises(NotFound, match="has no alias 'prod'"):
        _pull(reg, item.name, ":prod", tmp_path / "c")


# --------------------------------------------------------------------------- tampering


def test_changed_byte_in_a_model_file_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies)
    _edit(reg, layout.file_key(item.name, "1.0.0", "model.safetensors"), lambda b: _flip(b, 5 * MiB + 3))
    with pytest.raises(PullRefused) as refused:
        _pull(reg, item.name, "1.0.0", tmp_path / "out")
    assert refused.value.reason == "file model.safetensors: digest mismatch"
    assert not (tmp_path / "out").exists(), "nothing reaches the destination"


def test_changed_byte_in_the_manifest_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies)
    key = layout.manifest_key(item.name, "1.0.0")
    # Point the manifest at a different digest for config.json: a consistent-looking lie.
    target = next(e for e in item.manifest.files if e.path == "config.json").sha256
    _edit(reg, key, lambda b: b.replace(target.encode(), ("0" + target[1:]).encode()))
    with pytest.raises(PullRefused) as refused:
        _pull(reg, item.name, "1.0.0", tmp_path / "out")
    assert refused.value.reason == "manifest digest does not match the attestation"


def test_changed_byte_in_the_attestation_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    key = layout.attestation_key(item.name, "1.0.0")

    def forge(data: bytes) -> bytes:
        envelope = json.loads(data)
        payload = json.loads(base64.b64decode(envelope["payload"]))
        payload["predicate"]["decision"]["policy"] = "lenient"
        envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        return json.dumps(envelope).encode()

    _edit(reg, key, forge)
    with pytest.raises(PullRefused) as refused:
        _pull(reg, item.name, "1.0.0", tmp_path / "out")
    assert refused.value.reason.startswith("attestation signature invalid")

    raw_flip = _published(reg, tmp_path / "raw", policies, sizes={"w.bin": 10})
    raw_key = layout.attestation_key(raw_flip.name, "1.0.0")
    body = reg.admin_client().get_object(Bucket=BUCKET, Key=raw_key)["Body"].read()
    at = body.index(b'"sig": "') + 20
    _edit(reg, raw_key, lambda b: b[:at] + (b"A" if b[at : at + 1] != b"A" else b"B") + b[at + 1 :])
    with pytest.raises(PullRefused, match="attestation signature invalid"):
        _pull(reg, raw_flip.name, "1.0.0", tmp_path / "out2")


def test_attestation_signed_by_another_key_is_refused(reg: Registry, tmp_path: Path, policies: Path) -> None:
    from modelgate.registry.signer import ensure_key_pair

    private, _, _ = ensure_key_pair(tmp_path / "rogue-keys")
    item = _intake(tmp_path, policies, sizes={"w.bin": 10})
    publish(**item.publish_kwargs(), config=reg.publisher, signer=FileSigner.from_file(private))
    # The rogue signer signed the new model's index too: that is checked first.
    with pytest.raises(PullRefused, match="index signature invalid"):
        _pull(reg, item.name, "1.0.0", tmp_path / "out")
    # Under a properly signed index, the rogue attestation itself is refused.
    rogue = _intake(tmp_path / "v2", policies, name=item.name, version="2.0.0", sizes={"w.bin": 12}, seed=2)
    publish(**rogue.publish_kwargs(), config=reg.publisher, signer=FileSigner.from_file(private))
    sign_index(item.name, config=reg.publisher, signer=reg.signer, rebuild=True)
    with pytest.raises(PullRefused, match="attestation signature invalid"):
        _pull(reg, item.name, "2.0.0", tmp_path / "out")


# --------------------------------------------------------------------------- write-once, races, crashes


def test_versions_are_write_once_and_republishing_the_same_run_is_a_no_op(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    again = publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert again.already_published and again.bytes_uploaded == 0
    other = _intake(tmp_path / "other", policies, name=item.name, seed=5, sizes={"w.bin": 11})
    with pytest.raises(VersionExists, match="already published"):
        publish(**other.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert _pull(reg, item.name, "1.0.0", tmp_path / "out").root_digest == item.manifest.root_digest


def test_two_concurrent_publishes_of_one_version_exactly_one_wins(
    reg: Registry, tmp_path: Path, policies: Path
) -> None:
    name = unique("race")
    for round_ in range(2):
        version = f"1.0.{round_}"
        contenders = [
            _intake(tmp_path / f"{round_}-{i}", policies, name=name, version=version, seed=10 * round_ + i)
            for i in range(2)
        ]
        barrier = threading.Barrier(len(contenders))
        outcomes: dict[int, Any] = {}

        def go(i: int) -> None:
            barrier.wait()
            try:
                outcomes[i] = publish(**contenders[i].publish_kwargs(), config=reg.publisher, signer=reg.signer)
            except Exception as exc:  # noqa: BLE001 - the loser's error is the assertion
                outcomes[i] = exc

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(contenders))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, o in outcomes.items() if not isinstance(o, Exception)]
        assert len(winners) == 1, outcomes
        loser = outcomes[1 - winners[0]]
        assert isinstance(loser, VersionExists), loser
        winner = contenders[winners[0]]
        # No mixed state: every object under files/ is the winner's, byte for byte.
        model = _pull(reg, name, version, tmp_path / f"out-{round_}")
        assert model.root_digest == winner.manifest.root_digest
        assert tree(model.path) == tree(winner.model_dir)
        listed = reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=f"models/{name}/{version}/files/")
        assert {k["Key"].split("/files/", 1)[1] for k in listed["Contents"]} == {e.path for e in winner.manifest.files}
    index, _ = read_index(reg.consumer.client(), BUCKET, name, reg.public_key)
    assert index is not None and sorted(index.versions) == ["1.0.0", "1.0.1"]


class Killed(BaseException):
    """Stands for the process dying: no ``except Exception`` cleanup runs."""


def test_a_publish_killed_midway_leaves_no_visible_version(
    reg: Registry, tmp_path: Path, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = _intake(tmp_path, policies)

    def die(*args: Any, **kwargs: Any) -> bytes:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(PUBLISH_MODULE, "sign_envelope", die)
        with pytest.raises(Killed):
            publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    client = reg.consumer.client()
    keys = [k["Key"] for k in client.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{item.name}/")["Contents"]]
    assert any("/files/model.safetensors" in k for k in keys), "files were written before the kill"
    assert layout.claim_key(item.name, "1.0.0") in keys, "the dead publish left its claim"
    assert layout.attestation_key(item.name, "1.0.0") not in keys
    assert read_index(client, BUCKET, item.name, reg.public_key) == (None, None)
    with pytest.raises(NotFound):
        _pull(reg, item.name, "1.0.0", tmp_path / "out")
    # The claim names this process, which no longer runs that publish: the retry takes it over at once
    # (a claim of another live process is refused: tests/test_registry_claims.py).
    result = publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    assert not result.already_published
    assert result.claim_taken_over and "no longer runs that publish" in result.claim_taken_over
    assert _pull(reg, item.name, "1.0.0", tmp_path / "out").root_digest == item.manifest.root_digest


def test_a_failed_publish_removes_what_it_wrote(
    reg: Registry, tmp_path: Path, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = _intake(tmp_path, policies)

    def kms_down(*args: Any, **kwargs: Any) -> bytes:
        raise OSError("kms unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(PUBLISH_MODULE, "sign_envelope", kms_down)
        with pytest.raises(OSError, match="kms"):
            publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    listed = reg.admin_client().list_objects_v2(Bucket=BUCKET, Prefix=f"models/{item.name}/")
    assert listed.get("KeyCount", 0) == 0, [k["Key"] for k in listed.get("Contents", [])]
    other = _intake(tmp_path / "other", policies, name=item.name, seed=4)
    publish(**other.publish_kwargs(), config=reg.publisher, signer=reg.signer)


def test_publish_refuses_files_changed_after_the_manifest(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _intake(tmp_path, policies)
    path = item.model_dir / "model.safetensors"
    path.write_bytes(_flip(path.read_bytes(), 3 * MiB))
    with pytest.raises(PublishRefused, match="model.safetensors changed since the manifest"):
        publish(**item.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    with pytest.raises(NotFound):
        _pull(reg, item.name, "1.0.0", tmp_path / "out")


# --------------------------------------------------------------------------- resume


class _Gets:
    """Counts GetObject calls per key and range; can make the server 'go away' after N model-file GETs."""

    def __init__(self, client: Any, fail_after: int | None = None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.fail_after = fail_after
        self.lock = threading.Lock()
        client.meta.events.register("before-parameter-build.s3.GetObject", self)

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        key = str(params["Key"])
        with self.lock:
            if "/files/" in key and self.fail_after is not None and self.files() >= self.fail_after:
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1/unreachable")
            self.calls[(key, str(params.get("Range", "")))] += 1

    def files(self) -> int:
        return sum(n for (key, _), n in self.calls.items() if "/files/" in key)


def test_an_interrupted_pull_resumes_with_only_what_is_missing(reg: Registry, tmp_path: Path, policies: Path) -> None:
    sizes = {"a.bin": 2 * MiB, "b.bin": 2 * MiB, "c.bin": 2 * MiB, "big.bin": 16 * MiB}
    item = _published(reg, tmp_path, policies, sizes=sizes)
    one = reg.consumer.with_(workers=1)
    first = one.client()
    gets = _Gets(first, fail_after=3)  # 3 GETs (parts of big.bin, a small file) arrive, then the server is gone
    dest = tmp_path / "out"
    with pytest.raises(RegistryUnavailable):
        _pull(reg, item.name, "1.0.0", dest, config=one, client=first)
    assert not dest.exists()
    assert (tmp_path / ".out.partial" / "state.json").is_file()
    fetched_before = set(gets.calls)

    again = one.client()
    second = _Gets(again)
    model = _pull(reg, item.name, "1.0.0", dest, config=one, client=again)
    assert tree(dest) == tree(item.model_dir)
    file_gets = {k for k in second.calls if "/files/" in k[0]}
    assert not file_gets & {k for k in fetched_before if "/files/" in k[0]}, "nothing downloaded twice"

    def size_of(key: str, ranged: str) -> int:
        if ranged:
            first, last = ranged.removeprefix("bytes=").split("-")
            return int(last) - int(first) + 1
        return sizes.get(key.rsplit("/files/", 1)[1], 0)

    before = [(key, ranged) for key, ranged in fetched_before if "/files/" in key]
    assert len(before) == 3 and any(ranged for _, ranged in before), "parts of big.bin were among them"
    assert model.reused_bytes == sum(size_of(key, ranged) for key, ranged in before)
    assert model.downloaded_bytes + model.reused_bytes == item.manifest.total_bytes
    assert not (tmp_path / ".out.partial").exists()


def test_resume_of_whole_files_and_a_corrupted_partial_file(reg: Registry, tmp_path: Path, policies: Path) -> None:
    sizes = {"a.bin": 1 * MiB, "b.bin": 1 * MiB, "c.bin": 1 * MiB}
    item = _published(reg, tmp_path, policies, sizes=sizes)
    one = reg.consumer.with_(workers=1)
    first = one.client()
    _Gets(first, fail_after=2)
    with pytest.raises(RegistryUnavailable):
        _pull(reg, item.name, "1.0.0", tmp_path / "out", config=one, client=first)
    partial = tmp_path / ".out.partial" / "model"
    done = sorted(json.loads((partial.parent / "state.json").read_text())["parts"])
    assert done == ["a.bin", "b.bin"]
    # A verified file damaged on disk between the attempts is caught by re-hashing and fetched again.
    damaged = partial / done[0]
    damaged.write_bytes(_flip(damaged.read_bytes(), 10))
    again = one.client()
    second = _Gets(again)
    model = _pull(reg, item.name, "1.0.0", tmp_path / "out", config=one, client=again)
    assert tree(model.path) == tree(item.model_dir)
    refetched = sorted(key.rsplit("/", 1)[1] for key, _ in second.calls if "/files/" in key)
    assert done[1] not in refetched and done[0] in refetched
    assert model.files_reused == 1


# --------------------------------------------------------------------------- aliases and revocation


def test_alias_is_resolved_once_and_recorded_with_who_and_when(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    second = _intake(tmp_path / "v2", policies, name=item.name, version="2.0.0", seed=9, sizes={"w.bin": 12})
    publish(**second.publish_kwargs(), config=reg.publisher, signer=reg.signer)
    entry = set_alias(item.name, "prod", "1.0.0", config=reg.publisher, who="alice")
    assert entry.set_by == "alice"
    index, _ = read_index(reg.consumer.client(), BUCKET, item.name, reg.public_key)
    assert index is not None and index.aliases["prod"].version == "1.0.0" and index.aliases["prod"].set_by == "alice"
    assert _pull(reg, item.name, ":prod", tmp_path / "prod").root_digest == item.manifest.root_digest
    assert _pull(reg, f"{item.name}:prod", None, tmp_path / "prod2").version == "1.0.0"
    assert _pull(reg, item.name, None, tmp_path / "newest").version == "2.0.0", "no latest alias: newest version"
    with pytest.raises(NotFound):
        set_alias(item.name, "prod", "3.0.0", config=reg.publisher)


def test_revoked_version_is_refused_unless_allowed(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    set_alias(item.name, "prod", "1.0.0", config=reg.publisher)
    revoke(item.name, "1.0.0", "CVE-2099-0001 in the tokenizer", config=reg.publisher, who="secops")
    for ref in ("1.0.0", ":prod"):
        with pytest.raises(PullRefused) as refused:
            _pull(reg, item.name, ref, tmp_path / "out")
        assert refused.value.reason == f"version 1.0.0 of {item.name} is revoked: CVE-2099-0001 in the tokenizer"
    model = _pull(reg, item.name, "1.0.0", tmp_path / "out", allow_revoked=True)
    assert model.revoked and model.revocation_reason == "CVE-2099-0001 in the tokenizer"
    index, _ = read_index(reg.consumer.client(), BUCKET, item.name, reg.public_key)
    assert index is not None and index.versions["1.0.0"].revocation is not None
    assert index.versions["1.0.0"].revocation.revoked_by == "secops"
    with pytest.raises(RegistryError, match="revoked"):
        set_alias(item.name, "staging", "1.0.0", config=reg.publisher)


def test_concurrent_index_updates_are_not_lost(reg: Registry, tmp_path: Path, policies: Path) -> None:
    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    barrier = threading.Barrier(6)

    def point(i: int) -> None:
        barrier.wait()
        set_alias(item.name, f"team{i}", "1.0.0", config=reg.publisher)

    threads = [threading.Thread(target=point, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    index, _ = read_index(reg.consumer.client(), BUCKET, item.name, reg.public_key)
    assert index is not None and sorted(index.aliases) == [f"team{i}" for i in range(6)]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(reg: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    public = tmp_path / "org.pub"
    from modelgate.signing.truststore import spki_pem

    public.write_bytes(spki_pem(reg.public_key))
    env = {
        "MODELGATE_S3_ENDPOINT": reg.server.endpoint_url,
        "MODELGATE_REGISTRY_BUCKET": BUCKET,
        "MODELGATE_REGISTRY_ACCESS_KEY": reg.publisher.access_key or "",
        "MODELGATE_REGISTRY_SECRET_KEY": reg.publisher.secret_key or "",
        "MODELGATE_ORG_PUBLIC_KEY_FILE": str(public),
        "MODELGATE_ORG_SIGNING_KEY_FILE": str(reg.publisher.signing_key_path),
        "MODELGATE_REGISTRY_STATE_DIR": str(tmp_path / "consumer-state"),
        "MODELGATE_ACTOR": "cli-user",
        "COLUMNS": "250",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_cli_ls_show_alias_revoke_and_pull(
    reg: Registry, tmp_path: Path, policies: Path, cli_env: dict[str, str]
) -> None:
    from modelgate.cli.registry import pull_command, registry_group

    item = _published(reg, tmp_path, policies, sizes={"w.bin": 10})
    runner = CliRunner()
    listed = runner.invoke(registry_group, ["ls", item.name])
    assert listed.exit_code == 0, listed.output
    assert item.name in listed.output and "approved" in listed.output and "registry-test" in listed.output
    as_json = json.loads(runner.invoke(registry_group, ["ls", item.name, "--json"]).stdout)
    assert as_json[0]["versions"]["1.0.0"]["published_by"] and as_json[0]["name"] == item.name
    overview = runner.invoke(registry_group, ["show", item.name])
    assert overview.exit_code == 0 and "1 version(s)" in overview.output and "1.0.0" in overview.output
    shown = runner.invoke(registry_group, ["show", f"{item.name}@1.0.0"])
    assert shown.exit_code == 0, shown.output
    assert "attestation verified" in shown.output and item.manifest.root_digest in shown.output
    aliased = runner.invoke(registry_group, ["alias", item.name, "prod", "1.0.0"])
    assert aliased.exit_code == 0 and "set by cli-user" in aliased.output
    pulled = runner.invoke(pull_command, [f"{item.name}:prod", "--dest", str(tmp_path / "out"), "--json"])
    assert pulled.exit_code == 0, pulled.output
    assert json.loads(pulled.stdout)["version"] == "1.0.0" and tree(tmp_path / "out") == tree(item.model_dir)
    revoked = runner.invoke(registry_group, ["revoke", item.name, "1.0.0", "--reason", "bad weights"])
    assert revoked.exit_code == 0, revoked.output
    refused = runner.invoke(pull_command, [f"{item.name}@1.0.0", "--dest", str(tmp_path / "again")])
    assert refused.exit_code == 1
    assert f"version 1.0.0 of {item.name} is revoked: bad weights" in refused.output
    assert len(refused.output.strip().splitlines()) == 1, "one clear line"
    allowed = runner.invoke(pull_command, [f"{item.name}@1.0.0", "--dest", str(tmp_path / "again"), "--allow-revoked"])
    assert allowed.exit_code == 0, allowed.output
    missing = runner.invoke(pull_command, [f"{item.name}@9.0.0", "--dest", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "is not in the registry" in missing.output


def test_cli_init_creates_the_key_pair_and_the_bucket(
    reg: Registry, tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelgate.cli.registry import registry_group

    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELGATE_REGISTRY_BUCKET", "fresh-registry")
    monkeypatch.setenv("MODELGATE_REGISTRY_ACCESS_KEY", reg.server.access_key)
    monkeypatch.setenv("MODELGATE_REGISTRY_SECRET_KEY", reg.server.secret_key)
    out = tmp_path / "s3.json"
    result = CliRunner().invoke(registry_group, ["init", "--identities", str(out)])
    assert result.exit_code == 0, result.output
    keys = tmp_path / "home" / "keys"
    assert file_mode(keys / "org-signing.key") == 0o600 and (keys / "org-signing.pub").is_file()
    reg.admin_client().head_bucket(Bucket="fresh-registry")
    rendered = json.loads(out.read_text())
    assert file_mode(out) == 0o600
    roles = {i["name"]: i for i in rendered["identities"]}
    assert roles["modelgate-consumer"]["actions"] == ["Read:fresh-registry", "List:fresh-registry"]
    assert "Write:fresh-registry" in roles["modelgate-publisher"]["actions"]
    before = (keys / "org-signing.key").read_bytes()
    assert CliRunner().invoke(registry_group, ["init"]).exit_code == 0
    assert (keys / "org-signing.key").read_bytes() == before, "init never replaces an existing key"
