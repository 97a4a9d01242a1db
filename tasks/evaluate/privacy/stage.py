"""The privacy evaluations as Prefect tasks, each reading its own section of ``params.yaml``.

One section per evaluation under ``evaluate:`` (``membership``, ``inversion``, ``privacy_audit``,
``forensics``, ``leakage``) over the module's defaults, read by the harness's ``section_params``,
so a partial section in ``params.yaml`` keeps the other values (membership and inversion pick
their section themselves). The tasks carry the ``gpu`` tag like the security evaluations: a
Prefect concurrency limit on that tag keeps one evaluation per GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task

from modelgate.evidence import StageEvidence
from tasks.evaluate.harness import section_params
from tasks.evaluate.privacy.audit import DEFAULT_AUDIT_PARAMS, privacy_audit_stage
from tasks.evaluate.privacy.forensics import DEFAULT_FORENSICS_PARAMS, forensics_stage
from tasks.evaluate.privacy.inversion import DEFAULT_INVERSION_PARAMS, inversion_stage
from tasks.evaluate.privacy.leakage import DEFAULT_LEAKAGE_PARAMS, leakage_stage
from tasks.evaluate.privacy.mia import DEFAULT_MEMBERSHIP_PARAMS, membership_stage

MEMBERSHIP, INVERSION, PRIVACY, FORENSICS, LEAKAGE = "membership", "inversion", "privacy", "forensics", "leakage"
SECTIONS: dict[str, tuple[str, Mapping[str, Any]]] = {
    MEMBERSHIP: ("membership", DEFAULT_MEMBERSHIP_PARAMS),
    INVERSION: ("inversion", DEFAULT_INVERSION_PARAMS),
    PRIVACY: ("privacy_audit", DEFAULT_AUDIT_PARAMS),
    FORENSICS: ("forensics", DEFAULT_FORENSICS_PARAMS),
    LEAKAGE: ("leakage", DEFAULT_LEAKAGE_PARAMS),
}


@task(name="eval-membership", task_run_name="eval-membership")
def membership_task(model_dir: str, eval_data: str, settings: Mapping[str, Any], out_dir: str) -> StageEvidence:
    return membership_stage(Path(model_dir), eval_data, settings, Path(out_dir))  # reads its own section


@task(name="eval-inversion", task_run_name="eval-inversion")
def inversion_task(model_dir: str, eval_data: str, settings: Mapping[str, Any], out_dir: str) -> StageEvidence:
    return inversion_stage(Path(model_dir), eval_data, settings, Path(out_dir))  # reads its own section


@task(name="eval-privacy", task_run_name="eval-privacy")
def privacy_task(
    model_dir: str, reference_dir: str | None, eval_data: str, settings: Mapping[str, Any], out_dir: str
) -> StageEvidence:
    reference = Path(reference_dir) if reference_dir else None
    section = section_params(settings, *SECTIONS[PRIVACY])
    return privacy_audit_stage(Path(model_dir), reference, eval_data, section, Path(out_dir))


@task(name="eval-forensics", task_run_name="eval-forensics")
def forensics_task(
    model_dir: str, reference_dir: str | None, settings: Mapping[str, Any], out_dir: str
) -> StageEvidence:
    reference = Path(reference_dir) if reference_dir else None
    return forensics_stage(Path(model_dir), reference, section_params(settings, *SECTIONS[FORENSICS]), Path(out_dir))


@task(name="eval-leakage", task_run_name="eval-leakage")
def leakage_task(
    model_dir: str, reference_dir: str | None, eval_data: str, settings: Mapping[str, Any], out_dir: str
) -> StageEvidence:
    reference = Path(reference_dir) if reference_dir else None
    section = section_params(settings, *SECTIONS[LEAKAGE])
    return leakage_stage(Path(model_dir), eval_data, section, Path(out_dir), reference_dir=reference)
