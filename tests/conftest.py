"""Shared fixtures: an isolated modelgate home, a real Prefect server, the example models.

Every test that uses a server-starting fixture (``@starts_server``, tests/helpers/marks.py) gets the
``services`` marker here: ``pytest -m "not services"`` runs the unit tests alone."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.marks import mark_server_tests, starts_server
from tests.helpers.paths import REPO
from tests.helpers.ports import free_port

# Isolate every test run from the developer's state before anything imports Prefect.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="modelgate-tests-"))
os.environ.update(
    {
        "MODELGATE_HOME": str(_SESSION_TMP / "home"),
        "MODELGATE_EVIDENCE_DIR": str(_SESSION_TMP / "evidence"),
        "PREFECT_HOME": str(_SESSION_TMP / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "MODELGATE_LEDGER": "off",  # the ledger tests turn the DVC ledger on for themselves
        "MODELGATE_REGISTRY_STATE_DIR": str(_SESSION_TMP / "registry-state"),  # consumers' rollback state
    }
)
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
@starts_server
def prefect_server() -> Iterator[str]:
    """A real Prefect server (SQLite) started through `modelgate services`, on a free port."""
    from modelgate import services
    from modelgate.settings import load_settings

    os.environ["MODELGATE_PREFECT_PORT"] = str(free_port())
    settings = load_settings()
    state = services.start("prefect", settings=settings, timeout_s=120)
    api_url = f"{state.url}/api"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        os.environ["PREFECT_API_URL"] = api_url
        try:
            yield api_url
        finally:
            os.environ.pop("PREFECT_API_URL", None)
            services.stop("prefect", settings=settings)


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example models of `make run`, built once per test session."""
    from modelgate.demo.build import build_examples

    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> list:  # list[tests.helpers.zoo.ZooModel]
    """Clean and backdoored small CNNs (tests/helpers/zoo.py), trained once per test session."""
    from tests.helpers.zoo import zoo_models

    return zoo_models(tmp_path_factory)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts a server through one of its fixtures is a `services` (integration) test."""
    mark_server_tests(items)


def _tracked_changes() -> str | None:
    """``git status`` of the tracked files (None outside a git checkout): what a test must never change."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


_TRACKED_AT_START = _tracked_changes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test writes a tracked file: the suite fails if the checkout's tracked files changed while it ran."""
    if _TRACKED_AT_START is None or getattr(session.config, "workerinput", None) is not None:
        return
    now = _tracked_changes()
    if now is not None and now != _TRACKED_AT_START:
        changed = sorted(set(now.splitlines()) ^ set(_TRACKED_AT_START.splitlines()))
        print(f"\nERROR: tests changed tracked files: {changed}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
