"""The embedded services: idempotent up, clear error on a taken port, down stops only its own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modelgate import services
from modelgate.errors import ServiceError
from modelgate.settings import load_settings
from tests.helpers.ports import free_port


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.services
def test_prefect_server_starts_idempotently_and_stops(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_PREFECT_PORT", str(free_port()))
    settings = load_settings()
    first = services.start("prefect", settings=settings, timeout_s=120)
    try:
        again = services.start("prefect", settings=settings)
        assert again.pid == first.pid, "a second `up` must not start a second server"
        assert services.read_state("prefect", settings) is not None
        env = services.client_env(settings)
        assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{first.port}/api"
    finally:
        assert services.stop("prefect", settings=settings) is True
    assert services.read_state("prefect", settings) is None
    assert services.stop("prefect", settings=settings) is False, "stopping twice is a no-op"


def test_taken_port_gives_a_clear_error(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("MODELGATE_PREFECT_PORT", str(port))
        with pytest.raises(ServiceError, match=rf"port {port} on 127.0.0.1 is taken"):
            services.start("prefect", settings=load_settings())
    assert services.read_state("prefect", load_settings()) is None


def test_down_never_kills_a_process_it_did_not_start(isolated_home: Path) -> None:
    settings = load_settings()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        settings.services_dir.mkdir(parents=True)
        # A stale state file whose pid now belongs to another program.
        state = {
            "name": "prefect",
            "pid": stranger.pid,
            "port": 1,
            "url": "http://127.0.0.1:1",
            "started_at": 0,
            "log": "x",
            "command": ["/venv/bin/prefect", "server", "start"],
        }
        (settings.services_dir / "prefect.json").write_text(json.dumps(state))
        assert services.down(["prefect"], settings) == []
        assert stranger.poll() is None, "down must leave a foreign process alone"
    finally:
        stranger.kill()
        stranger.wait()


def test_broken_service_file_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "infra" / "local").mkdir(parents=True)
    (project / "infra" / "local" / "services.yaml").write_text("services: [unclosed\n")
    monkeypatch.setenv("MODELGATE_PROJECT", str(project))
    with pytest.raises(ServiceError, match="services.yaml: invalid YAML"):
        services.load_specs(load_settings())


def test_a_nearly_full_disk_is_refused_before_the_service_starts(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storage server started on a full disk fails every later write with a timeout; refuse it in one line."""
    project = tmp_path / "project"
    (project / "infra" / "local").mkdir(parents=True)
    (project / "infra" / "local" / "services.yaml").write_text(
        "services:\n  store:\n    description: x\n    port: 1\n    min_free_mb: 1000000000000\n"
        f"    command: ['{sys.executable}', '-c', 'pass']\n    health: http://127.0.0.1:1/\n"
    )
    monkeypatch.setenv("MODELGATE_PROJECT", str(project))
    monkeypatch.setenv("MODELGATE_STORE_PORT", str(free_port()))
    settings = load_settings()
    with pytest.raises(ServiceError, match=r"cannot start store: only \d+ MiB free .* needs 1000000000000 MiB"):
        services.start("store", settings=settings)
    assert services.read_state("store", settings) is None
    assert services.load_specs(load_settings())["store"].min_free_mb == 10**12
