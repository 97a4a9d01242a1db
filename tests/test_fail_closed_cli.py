"""Issue 14 through the CLI: a stage that errored makes the run ``error`` everywhere and publishes nothing.

The intake runs as a user runs it (``modelgate intake ...`` in a child process) against a real
Prefect server and a real SeaweedFS registry. The membership evaluation is made to crash inside
the child by a ``sitecustomize`` on its ``PYTHONPATH`` (the shadow-model training raises): the
rule that reads membership is an Audit rule, so before this issue the run was approved and
published although a stage had crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelgate.registry import pull
from modelgate.settings import load_settings
from tests.helpers.budgets import SMALL_BUDGET
from tests.helpers.marks import starts_server
from tests.helpers.registry import BUCKET, PUBLISHER, Registry, registry_server

pytestmark = pytest.mark.services

CRASH_MEMBERSHIP = """
import tasks.evaluate.privacy.mia as mia


def _crash(*args, **kwargs):
    raise RuntimeError("injected: the shadow models could not be trained")


mia.train_reference_models = _crash
"""


@pytest.fixture(scope="module")
@starts_server
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    keys = load_settings().home / "keys"
    with registry_server(tmp_path_factory, keys) as reg:
        yield reg


def _cli_env(prefect_server: str, registry: Registry, tmp_path: Path, fault: str | None) -> dict[str, str]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(SMALL_BUDGET))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_REGISTRY")}
    env.update(
        {
            "PREFECT_API_URL": prefect_server,
            "MODELGATE_PARAMS_FILE": str(params),
            "MODELGATE_S3_ENDPOINT": registry.server.endpoint_url,
            "MODELGATE_REGISTRY_BUCKET": BUCKET,
            "MODELGATE_REGISTRY_ACCESS_KEY": PUBLISHER[0],
            "MODELGATE_REGISTRY_SECRET_KEY": PUBLISHER[1],
        }
    )
    if fault is not None:
        faults = tmp_path / "faults"
        faults.mkdir()
        (faults / "sitecustomize.py").write_text(fault)
        env["PYTHONPATH"] = os.pathsep.join([str(faults), str(Path(__file__).resolve().parents[1])])
    return env


def _intake(env: dict[str, str], source: Path, name: str, version: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from modelgate.cli import main; sys.argv[0] = 'modelgate'; main()"
    args = ["intake", str(source), "--name", name, "--version", version, "--eval-data", "sklearn:digits", "--json"]
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_errored_evaluation_is_error_everywhere_and_unpublished(
    prefect_server: str, registry: Registry, examples: dict[str, Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    env = _cli_env(prefect_server, registry, tmp_path, CRASH_MEMBERSHIP)
    done = _intake(env, examples["digits-cnn-signed"], "errored-cnn", "1.0.0")
    assert done.returncode == 2, done.stderr[-2000:]
    outcome = json.loads(done.stdout)
    assert outcome["decision"] == "error"
    assert outcome["stages"]["membership"] == "error"
    assert "publish" not in outcome["stages"]
    assert any("membership" in reason for reason in outcome["reasons"]), outcome["reasons"]

    folder = Path(outcome["evidence_dir"])
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["decision"] == "error"
    assert any(r.startswith("stage membership errored") for r in decision["reasons"])
    assert "ERROR" in (folder / "report.md").read_text()

    with get_client(sync_client=True) as client:
        keys = ArtifactFilterKey(any_=["intake-errored-cnn"])
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=keys))
    assert found and "**ERROR**" in str(found[0].data)
    assert found[0].description is not None and found[0].description.endswith(": error")

    with pytest.raises(Exception, match="errored-cnn"):
        pull("errored-cnn", "1.0.0", tmp_path / "never", config=registry.consumer)
    listed = registry.admin_client().list_objects_v2(Bucket=BUCKET, Prefix="models/errored-cnn/")
    assert listed.get("KeyCount", 0) == 0, [o["Key"] for o in listed.get("Contents", [])]


def test_the_same_run_without_the_fault_is_approved_and_published(
    prefect_server: str, registry: Registry, examples: dict[str, Path], tmp_path: Path
) -> None:
    """The neighbour: the identical command on a healthy machine approves and publishes (so the test above
    failed for the crash, not for the model, the data or the registry)."""
    env = _cli_env(prefect_server, registry, tmp_path, None)
    done = _intake(env, examples["digits-cnn-signed"], "healthy-cnn", "1.0.0")
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout)
    assert outcome["decision"] == "approved" and outcome["stages"]["membership"] == "pass"
    assert outcome["stages"]["publish"] == "pass"
    model = pull("healthy-cnn", "1.0.0", tmp_path / "pulled", config=registry.consumer)
    assert model.root_digest == outcome["root_digest"]
