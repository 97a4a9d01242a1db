"""The consumer's rollback state without a server: validation, corruption, atomic writes, one file per registry."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from modelgate.registry import ConsumerState, IndexRefused, RegistryConfig, RegistryError
from modelgate.registry.consumer_state import STATE_ENV, default_state_dir, state_dir
from modelgate.registry.index import AliasEntry, LoadedIndex, RegistryIndex, index_envelope, open_index
from modelgate.registry.signer import FileSigner


def _signer() -> FileSigner:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return FileSigner(pem)


SIGNER = _signer()


def _loaded(name: str, sequence: int, alias_target: str = "1.0.0") -> LoadedIndex:
    """A really signed and verified index (the state only ever sees those)."""
    aliases = {"prod": AliasEntry(version=alias_target, set_by="t")}
    index = RegistryIndex(name=name, sequence=sequence, signer_key_id=SIGNER.key_id, aliases=aliases)
    verified, digest = open_index(index_envelope(index, SIGNER), name, SIGNER.public_key)
    return LoadedIndex(verified, '"etag"', digest)


def _config(tmp_path: Path, endpoint: str = "http://127.0.0.1:9000", bucket: str = "reg") -> RegistryConfig:
    return RegistryConfig(bucket=bucket, endpoint=endpoint, state_dir=tmp_path / "state")


def test_sequences_only_go_up_and_a_fork_is_refused(tmp_path: Path) -> None:
    state = ConsumerState(_config(tmp_path), SIGNER.public_key)
    third = _loaded("m", 3)
    state.accept("m", third)
    state.accept("m", third)  # the same index again
    with pytest.raises(IndexRefused, match="index sequence 2 is older than the 3 already seen"):
        state.accept("m", _loaded("m", 2))
    with pytest.raises(IndexRefused, match="fork"):
        state.accept("m", _loaded("m", 3, alias_target="0.9.0"))
    state.accept("m", _loaded("m", 7))
    seen = state.seen("m")
    assert seen is not None and seen.sequence == 7 and seen.signer_key_id == SIGNER.key_id
    with pytest.raises(IndexRefused, match="index is missing, but sequence 7 was already seen"):
        state.accept("m", None)
    state.accept("new-model", None)  # never seen, not there: nothing to remember
    assert state.seen("new-model") is None
    assert sorted(p.name for p in state.folder.iterdir() if not p.name.startswith(".")) == ["m.json"], "no temp files"


def test_each_registry_has_its_own_state(tmp_path: Path) -> None:
    """The default bucket name exists on every server: the endpoint is part of the key."""
    one = ConsumerState(_config(tmp_path, endpoint="http://one"), SIGNER.public_key)
    two = ConsumerState(_config(tmp_path, endpoint="http://two"), SIGNER.public_key)
    other_bucket = ConsumerState(_config(tmp_path, endpoint="http://one", bucket="other"), SIGNER.public_key)
    one.accept("m", _loaded("m", 9))
    two.accept("m", _loaded("m", 1))
    other_bucket.accept("m", _loaded("m", 1))
    assert len({one.folder, two.folder, other_bucket.folder}) == 3


def test_a_new_trusted_key_starts_a_new_history(tmp_path: Path) -> None:
    """A registry re-created with a new organization key (``make clean``) is not a rollback of the old one."""
    ConsumerState(_config(tmp_path), SIGNER.public_key).accept("m", _loaded("m", 9))
    rotated = _signer()
    index = RegistryIndex(name="m", sequence=1, signer_key_id=rotated.key_id)
    verified, digest = open_index(index_envelope(index, rotated), "m", rotated.public_key)
    ConsumerState(_config(tmp_path), rotated.public_key).accept("m", LoadedIndex(verified, "", digest))
    with pytest.raises(IndexRefused, match="older than the 9 already seen"):
        ConsumerState(_config(tmp_path), SIGNER.public_key).accept("m", _loaded("m", 1))


def test_a_corrupt_state_file_is_an_error_never_a_reset(tmp_path: Path) -> None:
    state = ConsumerState(_config(tmp_path), SIGNER.public_key)
    state.accept("m", _loaded("m", 5))
    path = state.path("m")
    path.write_text("{not json")
    with pytest.raises(RegistryError, match=r"registry state file .*m\.json is corrupt .*delete it to trust"):
        state.accept("m", _loaded("m", 1))
    assert path.read_text() == "{not json", "left as it was for whoever investigates"
    record = {
        "endpoint": "http://elsewhere",
        "bucket": "reg",
        "name": "m",
        "trusted_key_id": SIGNER.key_id,
        "sequence": 1,
        "digest": "sha256:00",
    }
    path.write_text(json.dumps(record))
    with pytest.raises(RegistryError, match="is corrupt .it is about m in reg at http://elsewhere"):
        state.accept("m", _loaded("m", 1))


def test_the_state_folder_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, "relative/state")
    with pytest.raises(RegistryError, match="must be an absolute path"):
        state_dir(RegistryConfig())
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(STATE_ENV, str(shared))
    with pytest.raises(RegistryError, match="is writable by others"):
        state_dir(RegistryConfig())
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "file"))
    with pytest.raises(RegistryError, match="cannot use .* as the registry state folder"):
        state_dir(RegistryConfig())
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "fine"))
    assert state_dir(RegistryConfig()) == tmp_path / "fine"
    assert os.stat(tmp_path / "fine").st_mode & 0o777 == 0o700
    monkeypatch.delenv(STATE_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "modelgate" / "registry"
    assert RegistryConfig.from_env().state_dir is None


def test_concurrent_consumers_keep_the_highest_sequence(tmp_path: Path) -> None:
    config = _config(tmp_path)
    indexes = [_loaded("m", n) for n in range(1, 21)]
    errors: list[BaseException] = []

    def see(loaded: LoadedIndex) -> None:
        try:
            ConsumerState(config, SIGNER.public_key).accept("m", loaded)
        except IndexRefused:
            pass  # an older one arriving after a newer one: refused, as it should be
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=see, args=(loaded,)) for loaded in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    seen = ConsumerState(config, SIGNER.public_key).seen("m")
    assert seen is not None and seen.sequence == 20
