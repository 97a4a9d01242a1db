"""Issue 4's promise through the real flow: an approved model lands in the registry (as the
publisher identity), a consumer pulls it verified; a rejected one is never published."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelgate.registry import pull
from modelgate.request import IntakeRequest
from modelgate.settings import load_settings
from tests.helpers.marks import starts_server
from tests.helpers.registry import BUCKET, CONSUMER, PUBLISHER, Registry, registry_server

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
@starts_server
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    keys = load_settings().home / "keys"  # where the flow's publisher finds the organization key
    with registry_server(tmp_path_factory, keys) as reg:
        yield reg


def test_approved_model_is_published_and_pulled_verified(
    prefect_server: str, registry: Registry, examples: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.intake import intake

    monkeypatch.setenv("MODELGATE_S3_ENDPOINT", registry.server.endpoint_url)
    monkeypatch.setenv("MODELGATE_REGISTRY_BUCKET", BUCKET)
    monkeypatch.setenv("MODELGATE_REGISTRY_ACCESS_KEY", PUBLISHER[0])
    monkeypatch.setenv("MODELGATE_REGISTRY_SECRET_KEY", PUBLISHER[1])
    approved = intake(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="published-cnn", version="1.0.0"))
    assert approved.decision == "approved", approved.reasons
    assert approved.stages["publish"] == "pass"
    rejected = intake(IntakeRequest(source=str(examples["digits-cnn-unsigned"]), name="published-cnn", version="2.0.0"))
    assert rejected.decision == "rejected"
    assert "publish" not in rejected.stages

    dest = tmp_path / "pulled"
    model = pull("published-cnn", "1.0.0", dest, config=registry.consumer)
    assert model.root_digest == approved.root_digest
    signed = examples["digits-cnn-signed"]
    for name in ("model.safetensors", "config.json", "README.md"):
        assert (dest / name).read_bytes() == (signed / name).read_bytes()
    with pytest.raises(Exception, match="2.0.0"):
        pull("published-cnn", "2.0.0", tmp_path / "never", config=registry.consumer)
    assert CONSUMER  # the consumer identity pulled; it cannot write (tests/test_registry.py)


def test_without_a_registry_publish_is_skipped_with_the_reason(
    prefect_server: str, examples: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.intake import intake

    monkeypatch.delenv("MODELGATE_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("MODELGATE_REGISTRY_BUCKET", raising=False)
    outcome = intake(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="local-cnn", version="1.0.0"))
    assert outcome.decision == "approved"
    assert outcome.stages["publish"] == "skipped"
