"""Where an intake run's evidence lives in a DVC workspace, and what its experiment is called.

``dvc.yaml`` declares these paths as the stages' outputs; the flow's evidence folder is copied to
``EVIDENCE_DIR`` when a run is recorded, so a recorded run and a ``dvc repro`` look alike.
"""

from __future__ import annotations

import re

from modelgate import pipeline

EVIDENCE_DIR = "evidence/current"
SCRATCH_DIR = ".intake"  # the fetched model during `dvc repro` (never versioned: the manifest pins it)
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
POLICY_SNAPSHOT = "policy.yaml"

# Evidence stages in flow order with their files, the evaluations, and what is not evidence: the pipeline's.
EVIDENCE_FILES, EVALUATIONS, NOT_EVIDENCE = pipeline.EVIDENCE_FILES, pipeline.EVALUATIONS, pipeline.NOT_EVIDENCE

# The intake stages of dvc.yaml, in order (the `examples` stage builds demo models, not an intake).
PIPELINE = pipeline.DVC_STAGES

# What dvc.yaml calls each intake stage with (`python -m modelgate.cli_stage` still works for old ledgers).
STAGE_COMMAND = "python -m flows.cli_stage"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def experiment_name(name: str, version: str, run_id: str) -> str:
    """``<name>-<version>-<run id prefix>``: readable in ``dvc exp show``, a valid git ref component."""
    text = _UNSAFE.sub("-", f"{name}-{version}")
    text = re.sub(r"\.{2,}", ".", text).strip(".-") or "intake"
    suffix = _UNSAFE.sub("", run_id)[:8] or "run"
    return f"{text}-{suffix}"
