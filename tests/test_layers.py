"""Layers that hold: the core (modelgate/) imports nothing from the intake side (flows/, tasks/).

Checked on the source, every import statement including those inside functions, so a lazy import
cannot hide a dependency; the intake side's CLI commands reach the core CLI as entry points.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTAKE_SIDE = ("flows", "tasks")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_the_core_imports_nothing_from_flows_or_tasks() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in sorted((REPO / "modelgate").rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] in INTAKE_SIDE
    ]
    assert offenders == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from flows.intake import intake\n    import tasks.fetch\n")
    assert [name for _, name in _imports(sample)] == ["flows.intake", "tasks.fetch"]


def test_the_intake_side_registers_its_commands() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="modelgate.commands")}
    assert names == {
        "intake": "flows.cli_intake:intake_command",
        "stage": "flows.cli_stage:stage_group",
        "serve": "flows.cli_serve:serve_command",
        "demo": "flows.cli_demo:demo_group",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from modelgate.cli import main; main(['--help'])"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    for name in names:
        assert f"  {name} " in done.stdout, name
