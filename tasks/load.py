"""Load stage: the only way model weights reach an evaluation.

Every weight file goes through the safe loader (scan verdict + manifest digest, child process
without network for checkpoints) and lands as safetensors in a fresh evaluation folder, next to
the model's JSON configuration. Evaluations read that folder and nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task

from modelgate.evidence import StageEvidence, Status, run_stage
from modelgate.scan.findings import ScanReport
from modelgate.scan.loader import LoadRefused, convert_model

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


load_task = task(name="load", task_run_name="load")(load_stage)
