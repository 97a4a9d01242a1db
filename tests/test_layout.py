"""The tests are laid out like the code: test modules, helpers apart (tests/helpers/), servers marked.

* A test module never imports another test module or conftest: what tests share is a helper.
* A helper defines no test, and a module named ``test_*.py`` holds tests (not helpers).
* A test that starts a server is a ``services`` test (tests/helpers/marks.py): a fixture that
  starts one is ``@starts_server`` (its users get the marker at collection), a test body that
  starts one carries the marker itself; ``pytest -m "not services"`` then runs the unit tests alone.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

TESTS = REPO / "tests"
HELPERS = TESTS / "helpers"
BENCH = REPO / "bench"
# Calls that start a real server: SeaweedFS, a registry on it, a Prefect server (or another embedded
# service), a headless browser.
STARTERS = {"seaweedfs", "registry_server", "services.start", "chromium"}
# An import of a test module (or of conftest), also inside a string of code a child process runs.
_IMPORT_OF_A_TEST = re.compile(
    r"\b(?:from|import)\s+tests\.(?:test_\w+|conftest)\b|\bfrom\s+tests\s+import\s+(?:test_|conftest)"
)


def _modules(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py") if ".venv" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_imports_of_test_modules(tmp_path: Path) -> None:
    """Check (a) finds each way of importing a test module, and lets the helpers' imports be."""
    bad = {
        "from tests.test_registry_support import intake": 1,
        "import tests.test_scan_code_configs as code": 1,
        "from tests import test_scan_unrecognized as unrec": 1,
        "from tests.conftest import free_port": 1,
        'CHILD = "from tests.test_registry_support import child_publish_main; child_publish_main()"': 1,
        "from tests.helpers.registry import intake": 0,
        "from tests.helpers import scan_corpus": 0,
        'NOTE = "tests/test_registry.py proves it"': 0,
    }
    for source, expected in bad.items():
        (tmp_path / "m.py").write_text(source + "\n")
        assert len(_imports_of_tests(tmp_path / "m.py")) == expected, source


def _imports_of_tests(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _IMPORT_OF_A_TEST.search(node.value):
            found.append(f"{node.lineno}: a string of code imports a test module")
        for name in names:
            if re.fullmatch(r"tests\.(test_\w+|conftest)(\..*)?", name):
                found.append(f"{node.lineno}: {name}")
                break
    return found


def test_no_module_imports_a_test_module() -> None:
    """(a) Test modules and benchmarks import what they share from tests.helpers, never from a test."""
    here = Path(__file__).resolve()  # its own samples of bad imports are strings
    offenders = {_rel(p): hits for p in _modules(TESTS, BENCH) if p != here and (hits := _imports_of_tests(p))}
    assert not offenders, f"import it from tests/helpers/ instead: {offenders}"


def test_helpers_define_no_tests_and_test_modules_hold_tests() -> None:
    """(b) tests/ holds test modules and conftest; helpers hold no test; a test_*.py module has tests."""
    stray = [_rel(p) for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"]
    assert not stray, f"helper modules belong in tests/helpers/: {stray}"
    for path in _modules(HELPERS):
        tree = ast.parse(path.read_text())
        tests = [
            n.name
            for n in ast.walk(tree)
            if (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_"))
            or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))
        ]
        assert not tests, f"{_rel(path)} is a helper but defines {tests}: move them to a test module"
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        if not any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_") for n in tree.body
        ):
            pytest.fail(f"{_rel(path)} holds no test: a helper named like a test belongs in tests/helpers/")


# --------------------------------------------------------------------------- the services marker


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _starts(body: list[ast.stmt]) -> list[str]:
    """The server-starting calls in ``body``, leaving out those inside ``with pytest.raises(...)``."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call) and _dotted(item.context_expr.func) == "pytest.raises"
            for item in node.items
        ):
            return  # a start that must fail starts nothing
        if isinstance(node, ast.Call) and _dotted(node.func) in STARTERS:
            found.append(_dotted(node.func))
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in body:
        visit(stmt)
    return found


def _decorators(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    return {_dotted(d.func if isinstance(d, ast.Call) else d) for d in fn.decorator_list}


def _module_marked(tree: ast.Module) -> bool:
    """Whether the module's ``pytestmark`` holds the services marker."""
    return any(
        isinstance(stmt, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets)
        and "pytest.mark.services" in {_dotted(n) for n in ast.walk(stmt.value) if isinstance(n, ast.Attribute)}
        for stmt in tree.body
    )


def _unmarked_starts(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    module_marked = _module_marked(tree)
    problems = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not (starts := _starts(fn.body)):
            continue
        decorators = _decorators(fn)
        if "pytest.fixture" in decorators and "starts_server" not in decorators:
            problems.append(f"fixture {fn.name} calls {starts} but is not @starts_server")
        elif fn.name.startswith("test_") and "pytest.mark.services" not in decorators and not module_marked:
            problems.append(f"{fn.name} calls {starts} without the services marker")
    return problems


def test_server_check_finds_unmarked_starts(tmp_path: Path) -> None:
    """Check (c) flags an unmarked starting fixture or test, and lets the marked ones and a failing start be."""
    cases = {
        "@pytest.fixture\ndef s3(f):\n    with seaweedfs(f) as s:\n        yield s\n": 1,
        "@pytest.fixture\n@starts_server\ndef s3(f):\n    with seaweedfs(f) as s:\n        yield s\n": 0,
        "def test_up(s):\n    services.start('prefect', settings=s)\n": 1,
        "@pytest.mark.services\ndef test_up(s):\n    services.start('prefect', settings=s)\n": 0,
        "pytestmark = [pytest.mark.services]\ndef test_up(s):\n    services.start('prefect', settings=s)\n": 0,
        "def test_taken(s):\n    with pytest.raises(E):\n        services.start('prefect', settings=s)\n": 0,
    }
    for source, expected in cases.items():
        (tmp_path / "test_m.py").write_text(source)
        assert len(_unmarked_starts(tmp_path / "test_m.py")) == expected, source


def test_every_test_that_starts_a_server_is_marked() -> None:
    """(c) Fixtures that start a server are @starts_server; test bodies that start one carry the marker."""
    offenders = {_rel(p): hits for p in _modules(TESTS) if (hits := _unmarked_starts(p))}
    assert not offenders, f"mark them (tests/helpers/marks.py): {offenders}"


def _collected(marker: str, *paths: str, cwd: Path = REPO) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, *paths],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 5), done.stdout[-4000:] + done.stderr[-4000:]  # 5: nothing selected
    return {line.split("[")[0] for line in done.stdout.splitlines() if "::" in line}


AUTO_CONFTEST = """
import pytest
from tests.helpers.marks import mark_server_tests, starts_server

@pytest.fixture(scope="session")
@starts_server
def server():
    yield "http://127.0.0.1:1"

@pytest.fixture
def client(server):
    return server

def pytest_collection_modifyitems(config, items):
    mark_server_tests(items)
"""
AUTO_TESTS = """
def test_direct(server): pass
def test_through_another_fixture(client): pass
def test_unit(tmp_path): pass
"""


def test_a_server_fixture_marks_its_users_even_through_another_fixture(tmp_path: Path) -> None:
    """The mechanism of tests/conftest.py, on a throwaway suite: users of a @starts_server fixture are
    `services` tests, directly or through another fixture; the rest are unit tests."""
    (tmp_path / "conftest.py").write_text(AUTO_CONFTEST)
    (tmp_path / "test_auto.py").write_text(AUTO_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    services: starts a server\n")
    assert _collected("services", cwd=tmp_path) == {
        "test_auto.py::test_direct",
        "test_auto.py::test_through_another_fixture",
    }
    assert _collected("not services", cwd=tmp_path) == {"test_auto.py::test_unit"}


def test_the_marker_splits_server_tests_from_unit_tests() -> None:
    """On the suite itself: `-m services` lists the tests that start a server (through a fixture or in
    their body), `-m "not services"` the unit tests of the same modules, and no test is in both."""
    files = [
        "tests/test_registry.py",
        "tests/test_registry_claims.py",
        "tests/test_fetch.py",
        "tests/test_services.py",
        "tests/test_pipeline.py",
    ]
    services = _collected("services", *files)
    unit = _collected("not services", *files)
    assert services and unit and not services & unit
    assert {t for t in services if t.startswith("tests/test_registry.py::")} == {
        t for t in services | unit if t.startswith("tests/test_registry.py::")
    }, "every registry test uses the SeaweedFS registry"
    assert "tests/test_registry_claims.py::test_an_expired_lease_is_taken_over_by_anyone" in services
    assert "tests/test_fetch.py::test_s3_prefix_on_seaweedfs" in services
    assert "tests/test_services.py::test_prefect_server_starts_idempotently_and_stops" in services
    assert "tests/test_registry_claims.py::test_the_claim_lease_is_validated" in unit
    assert "tests/test_fetch.py::test_serve_directory_yields_a_base_url" in unit  # an in-process fake server
    assert "tests/test_services.py::test_taken_port_gives_a_clear_error" in unit
    assert "tests/test_pipeline.py::test_every_reader_uses_the_table" in unit
