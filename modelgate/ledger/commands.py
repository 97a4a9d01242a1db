"""git and dvc as subprocesses: each call in its own workspace, each failure one readable line.

DVC runs as ``python -m dvc`` with this interpreter, so it is the DVC of this environment, and the
environment's ``bin`` leads ``PATH`` so the stage commands of ``dvc.yaml`` find modelgate.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelgate.ledger.config import LedgerConfig, LedgerError

IDENTITY = {"user.name": "modelgate ledger", "user.email": "modelgate@localhost"}
TIMEOUT_S = 900.0


def tool_env(config: LedgerConfig | None = None) -> dict[str, str]:
    """The environment git and dvc run in: no telemetry, no prompts, the S3 credentials of the ledger."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0", GX_ANALYTICS_ENABLED="false")
    if config is not None:
        env.update(
            AWS_ACCESS_KEY_ID=config.access_key,
            AWS_SECRET_ACCESS_KEY=config.secret_key,
            AWS_DEFAULT_REGION=config.region,
        )
    return env


def _last_line(text: str) -> str:
    """The most telling line of a tool's error output (dvc's ``ERROR:`` line, else the last one)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error:", "fatal:"))]
    return (errors or lines or ["no output"])[-1]


def run(
    command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, *, what: str, timeout: float = TIMEOUT_S
) -> str:
    """Run ``command`` in ``cwd``; return stdout, or raise ``LedgerError`` naming ``what`` failed and why."""
    try:
        proc = subprocess.run(
            list(command),
            cwd=cwd,
            env=dict(env) if env is not None else tool_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LedgerError(f"{what} failed: {exc}") from None
    if proc.returncode != 0:
        raise LedgerError(f"{what} failed: {_last_line(proc.stderr + proc.stdout)}")
    return proc.stdout


def git(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, *, what: str | None = None) -> str:
    identity = [arg for key, value in IDENTITY.items() for arg in ("-c", f"{key}={value}")]
    return run(["git", *identity, *args], cwd, env, what=what or f"git {args[0]}")


def dvc(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, *, what: str | None = None) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, env, what=what or f"dvc {' '.join(args[:2])}")


def set_identity(repo: Path) -> None:
    """Commit identity of a workspace (DVC commits experiments with the repository's own config)."""
    for key, value in IDENTITY.items():
        git(["config", key, value], repo)
