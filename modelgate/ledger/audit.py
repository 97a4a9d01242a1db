"""The auditor's side of the ledger: list the recorded intakes, compare two, restore one run's
evidence, and reproduce a run with ``dvc repro`` to the same metrics.

Everything reads the auditor's checkout (``$MODELGATE_HOME/ledger`` by default), which is synced
from the ledger's git remote first; restores and reproductions run in throwaway clones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelgate.evidence import sha256_bytes
from modelgate.ledger.commands import dvc, git, set_identity, tool_env
from modelgate.ledger.config import LedgerConfig, LedgerError
from modelgate.ledger.layout import EVIDENCE_DIR, METRICS_FILE
from modelgate.ledger.workspace import ensure_remote, file_lock, write_local_dvc_config

FINAL_STAGE = "metrics"


@dataclass(frozen=True)
class Intake:
    """One recorded intake run, as its experiment's params and decision describe it."""

    run_id: str
    experiment: str
    name: str
    version: str
    decision: str
    root_digest: str | None
    policy_digest: str | None
    source: str
    decided_at: str
    commit: str
    ref: str
    baseline: str


# --------------------------------------------------------------------------- the auditor's checkout


def _has_history(config: LedgerConfig) -> bool:
    path = config.remote_path
    return path is None or (path / "HEAD").is_file()


def sync_checkout(config: LedgerConfig) -> Path:
    """Clone the ledger into the auditor's checkout if needed, then fetch ``main`` and every experiment."""
    if not _has_history(config):
        raise LedgerError(f"no ledger at {config.remote} yet: no intake run has been recorded")
    checkout = config.checkout
    env = tool_env(config)
    with file_lock(checkout.parent / f".{checkout.name}.lock"):
        if not (checkout / ".git").is_dir():
            if checkout.exists() and any(checkout.iterdir()):
                raise LedgerError(f"{checkout} exists and is not a ledger checkout (set MODELGATE_LEDGER_DIR)")
            checkout.parent.mkdir(parents=True, exist_ok=True)
            git(["clone", "-q", config.remote, str(checkout)], checkout.parent, env, what="cloning the ledger")
            set_identity(checkout)
        git(["remote", "set-url", "origin", config.remote], checkout, env)
        refspecs = ["+refs/heads/main:refs/remotes/origin/main", "+refs/exps/*:refs/exps/*"]
        git(["fetch", "-q", "--prune", "origin", *refspecs], checkout, env, what="fetching the ledger")
        _follow_main(checkout, env)
        if (checkout / ".dvc").is_dir():
            write_local_dvc_config(checkout, config)
    return checkout


def _follow_main(checkout: Path, env: dict[str, str]) -> None:
    """Move a clean checkout of ``main`` to the remote's ``main``; leave one the auditor is using alone."""
    try:
        branch = git(["symbolic-ref", "-q", "--short", "HEAD"], checkout, env).strip()
        git(["rev-parse", "-q", "--verify", "origin/main"], checkout, env)
    except LedgerError:
        return
    dirty = git(["status", "--porcelain", "--untracked-files=no"], checkout, env).strip()
    if branch == "main" and not dirty:
        git(["reset", "-q", "--hard", "origin/main"], checkout, env)


# --------------------------------------------------------------------------- reading experiments


def _blobs(repo: Path, specs: list[str]) -> list[bytes | None]:
    """Contents of ``<commit>:<path>`` objects in one ``git cat-file --batch`` call (None if missing)."""
    if not specs:
        return []
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input=("\n".join(specs) + "\n").encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LedgerError(f"reading the ledger failed: {proc.stderr.decode(errors='replace').strip()}")
    out, pos = proc.stdout, 0
    blobs: list[bytes | None] = []
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[-1] == b"missing":
            blobs.append(None)
            continue
        size = int(header[2])
        blobs.append(out[pos : pos + size])
        pos += size + 1
    return blobs


def _intake(ref: str, commit: str, params: bytes | None, decision: bytes | None) -> Intake:
    intake = ((yaml.safe_load(params) or {}).get("intake") or {}) if params else {}
    record: dict[str, Any] = json.loads(decision) if decision else {}
    parts = ref.split("/")
    return Intake(
        run_id=str(intake.get("run_id") or ""),
        experiment=parts[-1],
        name=str(intake.get("name") or ""),
        version=str(intake.get("version") or ""),
        decision=str(record.get("decision") or "no decision"),
        root_digest=intake.get("root_digest"),
        policy_digest=intake.get("policy_digest"),
        source=str(intake.get("source") or ""),
        decided_at=str(record.get("decided_at") or ""),
        commit=commit,
        ref=ref,
        baseline="".join(parts[2:4]) if len(parts) >= 5 else "",
    )


def list_intakes(config: LedgerConfig, *, sync: bool = True) -> list[Intake]:
    """Every recorded intake, oldest decision first."""
    checkout = sync_checkout(config) if sync else config.checkout
    refs = git(["for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/"], checkout, tool_env(config))
    pairs = [line.split(" ", 1) for line in refs.splitlines() if " " in line]
    specs = [f"{commit}:{path}" for _, commit in pairs for path in ("params.yaml", f"{EVIDENCE_DIR}/decision.json")]
    blobs = _blobs(checkout, specs)
    intakes = [_intake(ref, commit, blobs[2 * i], blobs[2 * i + 1]) for i, (ref, commit) in enumerate(pairs)]
    return sorted(intakes, key=lambda i: (i.decided_at, i.experiment))


def find_intake(config: LedgerConfig, key: str, intakes: list[Intake] | None = None) -> Intake:
    """The intake a run id (or a unique prefix of it), an experiment name or a commit names."""
    key = key.strip()
    candidates = intakes if intakes is not None else list_intakes(config)
    exact = [i for i in candidates if key in (i.run_id, i.experiment, i.commit)]
    found = exact or (
        [i for i in candidates if i.run_id.startswith(key) or i.commit.startswith(key)] if len(key) >= 4 else []
    )
    if not found:
        raise LedgerError(f"no intake run {key!r} in the ledger {config.remote} (see `modelgate audit list`)")
    if len(found) > 1:
        names = ", ".join(i.experiment for i in found[:5])
        raise LedgerError(f"{key!r} names {len(found)} intake runs ({names}): give more of the run id")
    return found[0]


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class IntakeDiff:
    """What changed between two intakes, as ``dvc params diff`` and ``dvc metrics diff`` report it."""

    a: Intake
    b: Intake
    params: list[Change]
    metrics: list[Change]


def _changes(report: str) -> list[Change]:
    data = json.loads(report or "{}")
    return [
        Change(key, values.get("old"), values.get("new"))
        for _, table in sorted(data.items())
        for key, values in sorted(table.items())
    ]


def diff_intakes(config: LedgerConfig, key_a: str, key_b: str) -> IntakeDiff:
    """Params and metrics that differ between two recorded intakes (via dvc)."""
    intakes = list_intakes(config)
    a, b = find_intake(config, key_a, intakes), find_intake(config, key_b, intakes)
    env = tool_env(config)
    params = dvc(["params", "diff", a.commit, b.commit, "--json"], config.checkout, env)
    metrics = dvc(["metrics", "diff", a.commit, b.commit, "--json"], config.checkout, env)
    return IntakeDiff(a, b, _changes(params), _changes(metrics))


# --------------------------------------------------------------------------- restore and reproduce


@contextmanager
def _clone_at(config: LedgerConfig, intake: Intake, label: str) -> Iterator[Path]:
    """A throwaway clone of the ledger with the intake's experiment checked out."""
    ensure_remote(config)
    root = config.workspaces / f"{label}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    env = tool_env(config)
    try:
        git(["init", "-q", "-b", "main"], root, env)
        set_identity(root)
        git(["remote", "add", "origin", config.remote], root, env)
        git(["fetch", "-q", "origin", intake.ref], root, env, what=f"fetching experiment {intake.experiment}")
        git(["checkout", "-q", "--detach", "FETCH_HEAD"], root, env)
        write_local_dvc_config(root, config)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _locked_stages(repo: Path) -> list[str]:
    lock = repo / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}) if lock.is_file() else {}
    return list(stages)


@dataclass(frozen=True)
class Restored:
    """A restored evidence folder and how it compares with the digests in its decision record."""

    intake: Intake
    folder: Path
    files: int
    verified: list[str]
    mismatched: list[str]
    missing: list[str]


def restore(config: LedgerConfig, key: str, dest: Path) -> Restored:
    """Copy a run's full evidence (git records + DVC-pulled stage evidence) into ``dest``; verify digests."""
    intake = find_intake(config, key)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise LedgerError(f"{dest} is not empty: restore into a new folder")
    env = tool_env(config)
    config.require_endpoint()
    with _clone_at(config, intake, "restore") as root:
        dvc(["pull", "-q", *_locked_stages(root)], root, env, what="pulling the evidence from the DVC remote")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / EVIDENCE_DIR, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".gitignore"))
    return _verify(intake, dest)


def _verify(intake: Intake, folder: Path) -> Restored:
    decision = folder / "decision.json"
    recorded: dict[str, str] = json.loads(decision.read_text())["evidence"] if decision.is_file() else {}
    verified, mismatched, missing = [], [], []
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif sha256_bytes(path.read_bytes()) == digest:
            verified.append(name)
        else:
            mismatched.append(name)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return Restored(intake, folder, files, verified, mismatched, missing)


@dataclass(frozen=True)
class Reproduction:
    """Recorded vs re-run metrics of one intake; ``identical`` only on an exact match."""

    intake: Intake
    recorded: dict[str, Any]
    reproduced: dict[str, Any]
    differences: list[Change] = field(default_factory=list)
    workspace: Path | None = None

    @property
    def identical(self) -> bool:
        return not self.differences


def compare_metrics(recorded: dict[str, Any], reproduced: dict[str, Any]) -> list[Change]:
    keys = sorted(set(recorded) | set(reproduced))
    return [Change(k, recorded.get(k), reproduced.get(k)) for k in keys if recorded.get(k) != reproduced.get(k)]


def reproduce(config: LedgerConfig, key: str, *, keep: Path | None = None) -> Reproduction:
    """Re-run the recorded stages with ``dvc repro`` from the recorded params; compare the metrics exactly.

    ``keep``: copy the re-run's evidence there for inspection.
    """
    intake = find_intake(config, key)
    env = tool_env(config)
    with _clone_at(config, intake, "reproduce") as root:
        metrics_path = root / EVIDENCE_DIR / METRICS_FILE
        recorded = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        dvc(["repro", "-f", "-q", FINAL_STAGE], root, env, what=f"dvc repro of {intake.experiment}")
        reproduced = json.loads(metrics_path.read_text())
        if keep is not None:
            shutil.copytree(root / EVIDENCE_DIR, keep, dirs_exist_ok=True)
    return Reproduction(intake, recorded, reproduced, compare_metrics(recorded, reproduced), keep)
