"""Every command's failure path: one plain-text line on stderr and exit 2, never a traceback or exit 1.

Exit 1 is the negative verdict a command exists to give (rejected, unsafe, not verified, refused,
different); a crash, an unreachable server, a missing extra, a mistyped setting or a usage error
is exit 2. Each case runs the real console entry point in a child process with an environment
that makes it fail (servers on ports nothing listens on, bad values), as a user would meet it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ports import free_port

ENTRY = "import sys; from modelgate.cli import main; sys.argv[0] = 'modelgate'; main()"
# A sitecustomize that makes `import prefect` fail the way a missing extra does.
NO_PREFECT = """
import sys
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name == "prefect" or name.startswith("prefect."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Missing())
"""


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELGATE_", "PREFECT_API", "AWS_"))}
    home = tmp_path / "home"
    env.update(
        {
            "MODELGATE_HOME": str(home),
            "MODELGATE_EVIDENCE_DIR": str(tmp_path / "evidence"),
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "NO_COLOR": "1",
            "MODELGATE_LEDGER": "off",
        }
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "weights.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    return folder


DEAD = "http://127.0.0.1:{port}"
INTAKE = ["intake", "{model}", "--name", "m", "--version", "1"]

CASES: list[tuple[str, list[str], dict[str, str]]] = [
    # (case id, arguments ({model} and {tmp} are filled in), environment overrides ({dead} = nothing listens))
    ("intake-prefect-unreachable", INTAKE, {"PREFECT_API_URL": "{dead}/api"}),
    ("intake-max-files-abc", INTAKE, {"MODELGATE_MAX_FILES": "abc"}),
    ("intake-max-files-negative", INTAKE, {"MODELGATE_MAX_FILES": "-5"}),
    ("intake-timeout-zero", INTAKE, {"MODELGATE_HTTP_TIMEOUT_S": "0"}),
    ("intake-task-runner", INTAKE, {"MODELGATE_TASK_RUNNER": "mpi"}),
    (
        "intake-registry-workers",
        INTAKE,
        {"MODELGATE_REGISTRY_BUCKET": "b", "MODELGATE_REGISTRY_WORKERS": "abc"},
    ),
    ("intake-missing-extra", INTAKE, {"NO_PREFECT": "1"}),
    ("intake-bad-request", ["intake", "{model}", "--name", "bad name!", "--version", "1"], {}),
    ("pull-registry-unreachable", ["pull", "m@1", "--dest", "{tmp}/pulled"], {"MODELGATE_S3_ENDPOINT": "{dead}"}),
    ("registry-ls-unreachable", ["registry", "ls"], {"MODELGATE_S3_ENDPOINT": "{dead}"}),
    ("audit-list-no-ledger", ["audit", "list"], {"MODELGATE_LEDGER_REMOTE": "{tmp}/no-such-ledger.git"}),
    ("audit-list-ledger-switch", ["audit", "list"], {"MODELGATE_LEDGER": "maybe"}),
    ("automations-prefect-unreachable", ["automations", "ls"], {"PREFECT_API_URL": "{dead}/api"}),
    ("serve-prefect-unreachable", ["serve", "--setup-only"], {"PREFECT_API_URL": "{dead}/api"}),
    ("services-status-bad-port", ["services", "status"], {"MODELGATE_PREFECT_PORT": "70000"}),
    ("services-up-bad-port", ["services", "up", "s3"], {"MODELGATE_S3_PORT": "abc"}),
    ("scan-missing-path-with-brackets", ["scan", "{tmp}/no[/x]file"], {}),
    ("scan-unwritable-sarif", ["scan", "{model}", "--sarif", "{tmp}/no/such/dir/out.sarif"], {}),
    ("manifest-missing-folder", ["manifest", "{tmp}/missing"], {}),
    ("verify-missing-folder", ["verify", "{tmp}/missing"], {}),
    ("keygen-existing-key", ["keygen", "--out", "{tmp}/existing"], {}),
    ("policy-explain-unknown", ["policy", "explain", "no-such-policy"], {}),
    ("policy-test-missing-dir", ["policy", "test", "--dir", "{tmp}/no-tests"], {}),
    ("policy-validate-missing-file", ["policy", "validate", "{tmp}/missing.yaml"], {}),
    ("stage-request-missing-params", ["stage", "request", "--params", "{tmp}/none.yaml", "--evidence", "{tmp}/e"], {}),
    ("demo-build-unwritable", ["demo", "build", "--out", "/proc/modelgate-demo"], {}),
    ("unknown-option", ["--bogus"], {}),
    ("unknown-command", ["nosuch"], {}),
    ("missing-argument", ["pull"], {}),
]


@pytest.mark.parametrize(("case", "args", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_failure_is_one_line_and_exit_2(tmp_path: Path, case: str, args: list[str], overrides: dict[str, str]) -> None:
    env = _base_env(tmp_path)
    dead = DEAD.format(port=free_port())
    fill = {"model": str(_model(tmp_path)), "tmp": str(tmp_path), "dead": dead}
    if case == "keygen-existing-key":
        (tmp_path / "existing.pub").write_text("x")
    for key, value in overrides.items():
        if key == "NO_PREFECT":
            faults = tmp_path / "faults"
            faults.mkdir()
            (faults / "sitecustomize.py").write_text(NO_PREFECT)
            env["PYTHONPATH"] = os.pathsep.join([str(faults), env.get("PYTHONPATH", "")])
            continue
        env[key] = value.format(**fill)
    done = _run([a.format(**fill) for a in args], env, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    if case == "intake-missing-extra":
        assert lines[0].startswith("error: modelgate intake needs the intake extra: pip install 'modelgate[intake]'")
    if case == "scan-missing-path-with-brackets":
        assert "no[/x]file" in lines[0]
    if case.startswith("intake-max-files"):
        assert "MODELGATE_MAX_FILES" in lines[0]


def test_the_same_commands_succeed_without_the_fault(tmp_path: Path) -> None:
    """The neighbours: with a sane environment the commands above that need no server answer 0."""
    env = _base_env(tmp_path)
    model = _model(tmp_path)
    for args in (["scan", str(model)], ["manifest", str(model)], ["policy", "explain", "default"], ["--version"]):
        done = _run(args, env, tmp_path)
        assert done.returncode == 0, (args, done.stderr[-2000:])
