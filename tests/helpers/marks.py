"""Which tests start servers: the ``services`` marker (pyproject.toml) and how a test gets it.

A test is an integration test when it uses, directly or through another fixture, a fixture
decorated with ``starts_server`` (tests/conftest.py adds the marker at collection), or when its
own body starts a server (it carries ``@pytest.mark.services``, or its module's ``pytestmark``
does). ``pytest -m "not services"`` (``make test-unit``) runs the unit tests alone. The in-process
fakes of tests/helpers/servers.py (``FileServer``, ``FakeHubServer``: a thread on the loopback)
start nothing and stay unit tests; Prefect, SeaweedFS, a browser, ``modelgate serve`` do not.

    @pytest.fixture(scope="module")
    @starts_server
    def registry(tmp_path_factory): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
_STARTS_SERVER = "_modelgate_starts_server"


def starts_server(fixture: F) -> F:
    """Declare that ``fixture`` starts a server (put it under ``@pytest.fixture``)."""
    setattr(fixture, _STARTS_SERVER, True)
    return fixture


def server_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures of ``item`` (its whole closure) that start a server."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [
        name
        for name in getattr(item, "fixturenames", ())
        if any(getattr(d.func, _STARTS_SERVER, False) for d in info.name2fixturedefs.get(name, ()))
    ]


def mark_server_tests(items: list[pytest.Item]) -> None:
    """Give the ``services`` marker to every collected test that uses a server-starting fixture."""
    for item in items:
        if server_fixtures(item):
            item.add_marker(pytest.mark.services)
