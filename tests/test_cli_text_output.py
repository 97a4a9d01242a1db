"""What the CLI prints is text: brackets, markup-like names and control characters come out as they are.

Runs the console-script entry point in a child process (as a user or a CI step would), so the
real stdout/stderr and exit codes are what is checked.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

ENTRY = "import sys; from modelgate.cli import main; sys.argv[0] = 'modelgate'; main()"


def _modelgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_missing_path_with_brackets_is_one_literal_line(tmp_path: Path) -> None:
    missing = tmp_path / "no[/x]file"
    done = _modelgate("scan", str(missing), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and f"{missing}" in lines[0]


def test_markup_like_file_name_is_printed_as_is(tmp_path: Path) -> None:
    name = "w[red]x[bold] [link=x].pkl"
    (tmp_path / name).write_bytes(pickle.dumps([1, 2, 3]))
    done = _modelgate("scan", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert name in done.stdout
    assert "\x1b" not in done.stdout  # NO_COLOR: no ANSI codes at all


def test_control_characters_in_names_are_made_visible(tmp_path: Path) -> None:
    """A hostile file name cannot move the cursor or recolour the terminal of whoever reads the table."""
    name = "evil\x1b[2Jname.pkl"
    (tmp_path / name).write_bytes(pickle.dumps({"k": 1}))
    done = _modelgate("scan", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert "evil\\x1b[2Jname.pkl" in done.stdout
