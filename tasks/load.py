"""Load stage: the only way model weights reach an evaluation.

Every weight file goes through the safe loader (scan verdict + manifest digest, child process
without network for checkpoints) and lands as safetensors in a fresh evaluation folder, next to
the model's JSON configuration. Evaluations read that folder and nothing else.

The folder carries a load record (``modelgate-load.json``: every weight file it holds with its
sha256). An evaluation started on its own (``python -m flows.evaluate``, the ``evaluate``
deployment) accepts a folder only when the record verifies: nothing but JSON configs and the
recorded safetensors, digests equal. Anything else goes through scan + load first. A forged record
gains nothing: it can only vouch for safetensors files, which the loader would pass through as they are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from prefect import task

from modelgate.errors import ModelgateError
from modelgate.evidence import StageEvidence, Status, run_stage
from modelgate.scan.findings import ScanReport
from modelgate.scan.loader import LoadRefused, convert_model
from modelgate.scan.stage import scan_stage

LOAD_RECORD = "modelgate-load.json"
RECORD_SCHEMA = "modelgate.load/v1"
CONFIG_SUFFIXES = (".json",)  # configs and tokenizers: plain data the adapters parse, never executed
MAX_CONFIG_BYTES = 16 * 1024**2


def load_stage(model_dir: Path, report: ScanReport, out_dir: Path) -> StageEvidence:
    """Convert the scanned, safe weights into ``out_dir``; ``fail`` with the reason when refused."""

    def body() -> StageEvidence:
        try:
            result = convert_model(Path(model_dir), report, Path(out_dir))
        except LoadRefused as exc:
            return StageEvidence(stage="load", status=Status.FAIL, reason=str(exc))
        copied = _copy_configs(Path(model_dir), Path(out_dir))
        write_load_record(Path(out_dir), result.files)
        records = [r.model_dump(mode="json") for r in result.records]
        isolated = all(r.mode == "in-process" or r.network_namespace for r in result.records)
        return StageEvidence(
            stage="load",
            status=Status.PASS,
            metrics={
                "load.files": len(result.files),
                "load.network_isolated": isolated,
                "load.child_process_loads": sum(r.mode != "in-process" for r in result.records),
            },
            details={"out_dir": str(out_dir), "weights": records, "configs": copied},
            inputs={r.file: r.sha256 for r in result.records},
        )

    return run_stage("load", body)


def _copy_configs(model_dir: Path, out_dir: Path) -> list[str]:
    copied = []
    for path in sorted(model_dir.iterdir()):
        is_config = path.is_file() and not path.is_symlink() and path.suffix in CONFIG_SUFFIXES
        if is_config and path.stat().st_size <= MAX_CONFIG_BYTES:
            shutil.copyfile(path, out_dir / path.name)
            copied.append(path.name)
    return copied


def write_load_record(out_dir: Path, files: list[Path]) -> Path:
    """Record every converted weight file of ``out_dir`` with its sha256 (overwrites a copied record)."""
    record = {
        "schema": RECORD_SCHEMA,
        "files": {path.relative_to(out_dir).as_posix(): _sha256(path) for path in sorted(files)},
    }
    target = out_dir / LOAD_RECORD
    target.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def load_record_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a verified output of the load stage, or None when it is."""
    folder = Path(folder)
    record_path = folder / LOAD_RECORD
    if not record_path.is_file():
        return f"{folder}: no load record ({LOAD_RECORD}): the weights did not come through scan + safe load"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        files = dict(record["files"])
        if record.get("schema") != RECORD_SCHEMA:
            return f"{record_path}: unknown schema {record.get('schema')!r}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{record_path}: unreadable load record ({type(exc).__name__})"
    present: set[str] = set()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            return f"{folder}: {rel} is a symbolic link"
        if path.is_dir():
            continue
        if rel in files:
            present.add(rel)
            if _sha256(path) != files[rel]:
                return f"{folder}: {rel} changed since it was loaded (digest differs from the load record)"
        elif path.suffix not in CONFIG_SUFFIXES or path.parent != folder:
            return f"{folder}: {rel} is not in the load record (only JSON configs and recorded weights may be there)"
    missing = sorted(set(files) - present)
    if missing:
        return f"{folder}: {missing[0]} is in the load record but missing"
    if not all(name.endswith(".safetensors") for name in files):
        return f"{record_path}: the record lists a file that is not safetensors"
    return None


class EvaluationRefused(ModelgateError):
    """A folder an evaluation must not read: the scan or the safe loader refused it."""


def prepare_for_evaluation(model_dir: Path, work_dir: Path) -> tuple[Path, list[StageEvidence]]:
    """The folder an evaluation may read: ``model_dir`` itself when its load record verifies, else a
    fresh scan + safe load of it into ``work_dir/eval-model`` (their evidence is returned)."""
    model_dir = Path(model_dir)
    if load_record_problem(model_dir) is None:
        return model_dir, []
    if not model_dir.is_dir():
        raise EvaluationRefused(f"{model_dir}: not a folder")
    scan, report = scan_stage(model_dir)
    if scan.status is not Status.PASS:
        raise EvaluationRefused(f"the scan did not pass ({scan.status.value}): {scan.reason or 'see its findings'}")
    out = Path(work_dir) / "eval-model"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    load = load_stage(model_dir, report, out)
    if load.status is not Status.PASS:
        raise EvaluationRefused(f"the weights could not be loaded safely: {load.reason}")
    return out, [scan, load]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


load_task = task(name="load", task_run_name="load")(load_stage)
