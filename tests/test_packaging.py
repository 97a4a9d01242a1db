"""Every third-party module the code imports is declared: in the core's dependencies or in the intake extra.

Read from the source (every import statement, those inside functions too) and mapped to the
distribution that provides it in this venv, so an import that works here only because another
package happens to pull its provider in fails the test.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWN = {"modelgate", "flows", "tasks", "__future__"}
# Imported inside a guard that turns its absence into a refusal with a reason, never declared.
OPTIONAL = {"torchvision": "tasks/evaluate/adapters.py: torchvision architectures are refused when it does not import"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;~!]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _imports(folders: tuple[str, ...]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                modules: list[str] = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    providers = packages_distributions()
    missing = []
    for top, paths in sorted(_imports(folders).items()):
        dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
        if top not in OPTIONAL and not dists & declared:
            missing.append(f"{top} (from {sorted(dists) or 'nothing installed'}) in {sorted(paths)[0]}")
    return missing


def test_every_imported_module_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = _names(project["dependencies"])
    intake = core | _names(project["optional-dependencies"]["intake"])
    assert _undeclared(("modelgate",), intake) == []  # the core's heavy parts may come with the extra...
    assert _undeclared(("flows", "tasks"), intake) == []


def test_the_check_sees_an_undeclared_import(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "modelgate"
    package.mkdir()
    (package / "m.py").write_text("def f():\n    import botocore.exceptions\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert [line.split(" ")[0] for line in _undeclared(("modelgate",), {"boto3"})] == ["botocore"]
