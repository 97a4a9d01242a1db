"""The core as a consumer installs it: the wheel built from this tree, with only the core's dependencies.

``make install`` builds ``.venv-core`` with the dependencies of ``[project] dependencies`` and
nothing else (no Prefect, torch, pandas, DVC...). The test builds the core's wheel from a copy of
the working tree (offline, with this venv's setuptools), installs it beside them, and proves that
every core module imports, that the consumer commands answer, and that the intake side's commands
say in one line which extra they need, exit 2. The wheel must hold no top-level ``flows`` or
``tasks``: a consumer's site-packages is not the place for packages with such generic names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_PYTHON = REPO / ".venv-core" / "bin" / "python"
# What the core's own dependencies are not allowed to pull in behind its back.
EXTRAS_ONLY = ("prefect", "torch", "pandas", "dvc", "great_expectations", "transformers", "flows", "tasks")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CORE_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-core is missing: `make install` builds it")
        pytest.skip(".venv-core is missing (make install builds it)")
    root = tmp_path_factory.mktemp("core")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("modelgate", "flows", "tasks"):  # flows and tasks are copied so the wheel could pick them up
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*build, "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("modelgate-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"modelgate"}, tops
    site = root / "site"
    install = [str(CORE_PYTHON), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=300)
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PYTHONPATH": str(site), "NO_COLOR": "1", "HOME": str(site.parent)}
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, cwd=site.parent, timeout=300, check=False
    )


def test_every_core_module_imports_without_the_extras(core_site: Path) -> None:
    code = (
        "import importlib, pkgutil, sys, modelgate\n"
        "names = [m.name for m in pkgutil.walk_packages(modelgate.__path__, 'modelgate.')]\n"
        "for name in names: importlib.import_module(name)\n"
        f"leaked = sorted({{m.split('.')[0] for m in sys.modules}} & set({EXTRAS_ONLY!r}))\n"
        "print(len(names), modelgate.__file__, leaked)\n"
    )
    done = _run(core_site, str(CORE_PYTHON), "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    count, location, leaked = done.stdout.split(maxsplit=2)
    assert int(count) > 50
    assert location.startswith(str(core_site))  # the installed wheel, not the checkout
    assert leaked.strip() == "[]"


def test_the_consumer_commands_answer(core_site: Path) -> None:
    script = str(core_site / "bin" / "modelgate")
    for args in (["--help"], ["pull", "--help"], ["registry", "--help"], ["scan", "--help"]):
        done = _run(core_site, str(CORE_PYTHON), script, *args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert "Usage: modelgate" in done.stdout
    assert "  intake " in _run(core_site, str(CORE_PYTHON), script, "--help").stdout  # listed, with its extra


def test_a_real_scan_runs_on_the_core_alone(core_site: Path) -> None:
    model = core_site.parent / "model"
    model.mkdir()
    (model / "weights.pkl").write_bytes(b"\x80\x04K\x01.")  # pickle of the int 1: nothing to import
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))  # parsed with jinja2
    done = _run(core_site, str(CORE_PYTHON), str(core_site / "bin" / "modelgate"), "scan", str(model))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["intake", "hf://org/model", "--name", "m", "--version", "1"],
        ["intake", "--help"],
        ["stage", "fetch"],
        ["serve"],
        ["demo", "run"],
    ],
    ids=["intake", "intake-help", "stage", "serve", "demo"],
)
def test_the_intake_side_says_which_extra_in_one_line(core_site: Path, args: list[str]) -> None:
    done = _run(core_site, str(CORE_PYTHON), str(core_site / "bin" / "modelgate"), *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"error: modelgate {args[0]} needs the intake extra: pip install 'modelgate[intake]'")
