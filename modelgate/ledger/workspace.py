"""A per-run DVC workspace: a fresh clone of the ledger where one intake run becomes one experiment.

Each run gets its own clone, so DVC's per-workspace lock never sees two runs. What runs share is
written safely: experiment refs are distinct per run (``git push`` of one ref), the pipeline
baseline on ``main`` is pushed with retry (a rejected push re-reads the remote), and the S3 objects
are content-addressed.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelgate import __version__
from modelgate.evidence import StageEvidence, Status, sha256_bytes, write_evidence
from modelgate.ledger.commands import dvc, git, set_identity, tool_env
from modelgate.ledger.config import DVC_REMOTE, LedgerConfig, LedgerError
from modelgate.ledger.layout import EVIDENCE_DIR, EVIDENCE_FILES, PIPELINE, POLICY_SNAPSHOT
from modelgate.ledger.metrics import write_metrics
from modelgate.policy.decision import Decision
from modelgate.request import IntakeRequest

PUSH_ATTEMPTS = 6
RECORD_EXCLUDE = ("version.json",)  # written after the experiment: it describes the experiment itself

LEDGER_README = """# modelgate evidence ledger

Every intake run of modelgate is a DVC experiment of this repository: `params.yaml` holds the
request (`intake:`) and the evaluation parameters, `evidence/current/` the run's evidence
(`metrics.json`, `decision.json`, `report.md`, `policy.yaml` and `plots/` in git, the stage evidence
in the DVC remote). `main` holds the pipeline (`dvc.yaml`) the runs were recorded with.

    dvc exp show -A                 # every intake, with params and metrics
    dvc metrics diff EXP_A EXP_B    # compare two intakes
    dvc exp pull origin EXP && dvc exp apply EXP   # one run's evidence in evidence/current/

See docs/audit.md in the modelgate repository.
"""
GITIGNORE = "/.intake/\n"
DVC_GITIGNORE = "/config.local\n/tmp\n/cache\n"


def dvc_config(config: LedgerConfig) -> str:
    """The committed DVC config: the S3 remote by bucket (the endpoint is per machine, in config.local)."""
    return (
        f"[core]\n    analytics = false\n    remote = {DVC_REMOTE}\n"
        f"['remote \"{DVC_REMOTE}\"']\n    url = {config.dvc_url}\n"
    )


def write_local_dvc_config(repo: Path, config: LedgerConfig) -> None:
    """This machine's S3 endpoint for the ledger remote (credentials stay in the environment)."""
    text = f"['remote \"{DVC_REMOTE}\"']\n    endpointurl = {config.endpoint}\n" if config.endpoint else ""
    (repo / ".dvc" / "config.local").write_text(text, encoding="utf-8")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine (held while the block runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_remote(config: LedgerConfig) -> None:
    """Create the bare ledger repository on first use when the remote is a local path."""
    path = config.remote_path
    if path is None:
        return
    with file_lock(path.parent / f".{path.name}.lock"):
        if (path / "HEAD").is_file():
            return
        if path.exists() and any(path.iterdir()):
            raise LedgerError(f"ledger remote {path} exists but is not a git repository")
        path.mkdir(parents=True, exist_ok=True)
        git(["init", "-q", "--bare", "-b", "main", str(path)], path.parent, what="creating the ledger repository")


def ledger_pipeline(project_dvc_yaml: Path) -> str:
    """The project's dvc.yaml reduced to the intake stages (and its plots): what every recorded run is.

    The project's other stages (the demo models) are not part of an intake, so the ledger leaves them
    out and a plain ``dvc pull`` or ``dvc repro`` there covers exactly one intake run.
    """
    if not project_dvc_yaml.is_file():
        raise LedgerError(f"{project_dvc_yaml}: the pipeline definition is missing")
    project = yaml.safe_load(project_dvc_yaml.read_text(encoding="utf-8")) or {}
    stages = project.get("stages") or {}
    missing = [name for name in PIPELINE if name not in stages]
    if missing:
        raise LedgerError(f"{project_dvc_yaml}: the intake stage {missing[0]!r} is not declared")
    pipeline: dict[str, Any] = {"stages": {name: stages[name] for name in PIPELINE}}
    pipeline.update({key: project[key] for key in ("plots", "metrics", "params") if key in project})
    header = f"# The intake pipeline of modelgate {__version__} (its dvc.yaml, intake stages only).\n"
    return header + yaml.safe_dump(pipeline, sort_keys=False, allow_unicode=True)


def stage_files(dvc_yaml: Path) -> dict[str, list[str]]:
    """Stage name -> every path it depends on or writes (deps, outs, metrics, plots), from dvc.yaml."""
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages") or {}
    files: dict[str, list[str]] = {}
    for name, body in stages.items():
        paths: list[str] = []
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in body.get(key) or []:
                paths += [entry] if isinstance(entry, str) else list(entry)
        files[str(name)] = paths
    return files


def snapshot_policy(folder: Path, decision: Decision) -> Path | None:
    """Copy the policy the decision names into the evidence, if its bytes still match the recorded digest."""
    source = Path(decision.policy.path)
    if not source.is_file() or sha256_bytes(source.read_bytes()) != decision.policy.digest:
        return None
    target = folder / POLICY_SNAPSHOT
    shutil.copyfile(source, target)
    return target


def _read_params(path: Path) -> dict[str, Any]:
    """A params file as it is (the run that recorded it checked it strictly before it started)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ExperimentRef:
    """An experiment in the ledger: its name, commit, full ref and the baseline commit it extends."""

    name: str
    commit: str
    ref: str
    baseline: str


@dataclass
class Workspace:
    """One clone of the ledger, used by one run and removed afterwards."""

    root: Path
    config: LedgerConfig
    env: dict[str, str]
    baseline: str = ""

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: LedgerConfig, label: str) -> Iterator[Workspace]:
        """A fresh clone on the current pipeline baseline; removed when the block ends."""
        ensure_remote(config)
        root = config.workspaces / f"{label}-{uuid.uuid4().hex[:8]}"
        root.mkdir(parents=True)
        workspace = cls(root, config, tool_env(config))
        try:
            git(["init", "-q", "-b", "main"], root)
            set_identity(root)
            git(["remote", "add", "origin", config.remote], root)
            workspace.baseline = workspace._ensure_baseline()
            write_local_dvc_config(root, config)
            yield workspace
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _git(self, *args: str, what: str | None = None) -> str:
        return git(list(args), self.root, self.env, what=what)

    def _dvc(self, *args: str, what: str | None = None) -> str:
        return dvc(list(args), self.root, self.env, what=what)

    # -- the baseline: main holds the pipeline the runs are recorded with

    def _templates(self) -> dict[str, str]:
        return {
            "dvc.yaml": ledger_pipeline(self.config.project / "dvc.yaml"),
            ".gitignore": GITIGNORE,
            ".dvcignore": GITIGNORE,
            ".dvc/config": dvc_config(self.config),
            ".dvc/.gitignore": DVC_GITIGNORE,
            "README.md": LEDGER_README,
        }

    def _ensure_baseline(self) -> str:
        """Check out ``main``; if its pipeline differs from this install's, commit and push a new baseline."""
        error = ""
        for attempt in range(PUSH_ATTEMPTS):
            has_main = bool(self._git("ls-remote", "--heads", "origin", "main", what="reading the ledger").strip())
            if has_main:
                self._git("fetch", "-q", "origin", "+refs/heads/main:refs/remotes/origin/main", what="fetching main")
                self._git("checkout", "-q", "-f", "-B", "main", "origin/main")
                self._git("clean", "-q", "-fdx")
            for name, text in self._templates().items():
                (self.root / name).parent.mkdir(parents=True, exist_ok=True)
                (self.root / name).write_text(text, encoding="utf-8")
            if has_main and not self._git("status", "--porcelain").strip():
                return self._git("rev-parse", "HEAD").strip()
            project_params = self.config.project / "params.yaml"
            if project_params.is_file():
                shutil.copyfile(project_params, self.root / "params.yaml")
            self._git("add", "-A")
            self._git("commit", "-q", "-m", f"Intake pipeline of modelgate {__version__}")
            try:
                self._git("push", "-q", "origin", "main:refs/heads/main", what="pushing the pipeline baseline")
                return self._git("rev-parse", "HEAD").strip()
            except LedgerError as exc:  # another run moved main first: read it again
                error = str(exc)
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))  # noqa: S311 - jitter, not security
        raise LedgerError(f"could not update the ledger baseline after {PUSH_ATTEMPTS} attempts: {error}")

    # -- recording one run

    def stage_evidence(
        self, evidence_dir: Path, *, request: IntakeRequest, decision: Decision | None, run_id: str, experiment: str
    ) -> Path:
        """Copy the run's evidence into ``evidence/current``, add the metrics and plots, write the params."""
        dest = self.root / EVIDENCE_DIR
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(evidence_dir, dest, ignore=shutil.ignore_patterns(*RECORD_EXCLUDE))
        _canonical_files(dest)
        if not (dest / "request.json").is_file():
            write_evidence(dest, "request", request)
        if decision is not None and not (dest / POLICY_SNAPSHOT).is_file():
            snapshot_policy(dest, decision)
        write_metrics(dest)
        self._write_params(request, decision, run_id, experiment)
        return dest

    def _write_params(self, request: IntakeRequest, decision: Decision | None, run_id: str, experiment: str) -> None:
        params = _read_params(self.root / "params.yaml") if (self.root / "params.yaml").is_file() else {}
        project = self.config.project / "params.yaml"
        if project.is_file():
            params.update({k: v for k, v in _read_params(project).items() if k != "intake"})
        intake: dict[str, Any] = request.model_dump(mode="json")
        intake.update(
            run_id=run_id,
            experiment=experiment,
            root_digest=decision.model.root_digest if decision else None,
            policy_digest=decision.policy.digest if decision else None,
            modelgate_version=__version__,
        )
        params["intake"] = intake
        text = yaml.safe_dump(params, sort_keys=False, allow_unicode=True)
        (self.root / "params.yaml").write_text(text, encoding="utf-8")

    def committable(self) -> list[str]:
        """Stages of dvc.yaml whose deps and outputs all exist here (``examples`` never does in the ledger)."""
        stages = stage_files(self.root / "dvc.yaml")
        return [name for name, paths in stages.items() if all((self.root / p).exists() for p in paths)]

    def save(self, experiment: str) -> ExperimentRef:
        """Commit the outputs to the DVC cache and save the workspace as experiment ``experiment``."""
        targets = self.committable()
        if not targets:
            raise LedgerError("no stage of dvc.yaml has its evidence in the workspace: nothing to record")
        self._dvc("commit", "-f", "-q", *targets, what="committing the evidence to the DVC cache")
        self._git("add", "-A")
        self._dvc("exp", "save", "-q", "-n", experiment, *targets, what="saving the DVC experiment")
        refs = self._git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/")
        for line in refs.splitlines():
            ref, _, commit = line.partition(" ")
            if ref.endswith(f"/{experiment}"):
                return ExperimentRef(experiment, commit, ref, self.baseline)
        raise LedgerError(f"dvc exp save reported no experiment named {experiment}")

    def push(self, experiment: str) -> None:
        """Push the experiment's ref to the git remote and its cached evidence to the DVC remote."""
        error = ""
        for attempt in range(PUSH_ATTEMPTS):
            try:
                self._dvc("exp", "push", "-q", "origin", experiment, what="pushing the experiment")
                return
            except LedgerError as exc:
                error = str(exc)
                time.sleep(random.uniform(0.2, 0.6) * (attempt + 1))  # noqa: S311 - jitter, not security
        raise LedgerError(f"{error} (after {PUSH_ATTEMPTS} attempts)")


def _canonical_files(folder: Path) -> None:
    """Every evidence file dvc.yaml declares exists under its declared name.

    Evidence the flow wrote under another name (e.g. ``backdoor.json``) is copied to the declared
    one; a stage the flow did not record at all is recorded as ``skipped`` saying so.
    """
    others: dict[str, Path] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            stage = StageEvidence.model_validate_json(path.read_bytes()).stage
        except ValueError:
            continue
        others.setdefault(stage, path)
    for stage, file in EVIDENCE_FILES.items():
        target = folder / file
        if target.is_file():
            continue
        if stage in others:
            shutil.copyfile(others[stage], target)
        else:
            reason = f"the intake flow recorded no {stage} evidence for this run"
            write_evidence(folder, target.stem, StageEvidence(stage=stage, status=Status.SKIPPED, reason=reason))
