"""The intake pipeline as data: every stage in order, where its evidence goes, and when it is skipped.

This table is the one place the order of the stages, their prerequisites and their skip reasons
are written. The Prefect flow (``flows/intake.py``), the DVC stage entry points
(``flows/dvc_stages.py``, what ``dvc repro`` runs), the CLI's progress table and the ledger
all read it, so a run and its reproduction write the same evidence, reasons included. Adding a
stage is one row here plus its function.

A stage runs only when every one of its ``needs`` holds; the first that does not is its recorded
``skipped`` reason. The gate reads each skip explicitly (docs/cli.md lists which rule catches
which skip); an errored stage is never skipped past: it makes the decision ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelgate.evidence import StageEvidence, Status

FETCH_INCOMPLETE = "fetch did not complete"
NO_MANIFEST = "no manifest"
SCAN_NOT_PASSED = "the scan did not pass: nothing is loaded"
NO_EVAL_DATA = "no evaluation data named in the request (eval_data)"
NOT_LOADED = "the weights could not be loaded safely"
REFERENCE_REFUSED = "the reference was refused: {reason}"
NOT_PUBLISHED_BY_REQUEST = "the request asked not to publish"
NO_REGISTRY = "no registry configured (set MODELGATE_S3_ENDPOINT or MODELGATE_REGISTRY_BUCKET)"


@dataclass(frozen=True)
class Need:
    """One prerequisite of a stage; ``reason`` is the stage's skip reason when it does not hold.

    ``passed``: stage ``subject`` passed. ``manifest``: the manifest stage produced a file list
    (a pin mismatch fails the stage but still lists the files). ``request``: the request's field
    ``subject`` is set. ``not_refused``: stage ``subject`` did not fail (``{reason}`` is its reason).
    """

    kind: Literal["passed", "manifest", "request", "not_refused"]
    subject: str
    reason: str

    def unmet(self, recorded: Mapping[str, StageEvidence], request: Any) -> str | None:
        evidence = recorded.get(self.subject)
        if self.kind == "passed":
            return None if evidence is not None and evidence.status is Status.PASS else self.reason
        if self.kind == "manifest":
            produced = evidence is not None and isinstance(evidence.details.get("files"), list)
            return None if produced else self.reason
        if self.kind == "request":
            return None if getattr(request, self.subject) else self.reason
        if evidence is not None and evidence.status is Status.FAIL:
            return self.reason.format(reason=evidence.reason)
        return None


@dataclass(frozen=True)
class Stage:
    """One intake stage: its name (the evidence's ``stage``), its file in a DVC workspace, its needs."""

    name: str
    dvc_file: str | None  # None: written after the gate read the evidence (not evidence itself)
    needs: tuple[Need, ...] = ()
    evaluation: bool = False  # run by the evaluation subflow
    dvc_stage: str | None = None  # the dvc.yaml stage that writes its evidence (None: the flow's alone)


_FETCHED = (Need("passed", "fetch", FETCH_INCOMPLETE),)
_LOADABLE = (Need("passed", "scan", SCAN_NOT_PASSED), Need("request", "eval_data", NO_EVAL_DATA))
_LOADED = (*_LOADABLE, Need("passed", "load", NOT_LOADED))
_WITH_REFERENCE = (*_LOADED, Need("not_refused", "reference", REFERENCE_REFUSED))

STAGES: tuple[Stage, ...] = (
    Stage("fetch", "fetch.json", dvc_stage="fetch"),
    Stage("manifest", "manifest.json", _FETCHED, dvc_stage="manifest"),
    Stage("signature", "signature.json", (*_FETCHED, Need("manifest", "manifest", NO_MANIFEST)), dvc_stage="signature"),
    Stage("provenance", "provenance.json", _FETCHED, dvc_stage="provenance"),
    Stage("scan", "scan.json", _FETCHED, dvc_stage="scan"),
    Stage("load", "load.json", _LOADABLE, dvc_stage="evaluate"),
    Stage("reference", "reference.json", _LOADED, dvc_stage="evaluate"),
    Stage("backdoor", "eval-backdoor.json", _LOADED, evaluation=True, dvc_stage="evaluate"),
    Stage("adversarial", "eval-adversarial.json", _LOADED, evaluation=True, dvc_stage="evaluate"),
    Stage("membership", "eval-membership.json", _LOADED, evaluation=True, dvc_stage="evaluate"),
    Stage("privacy", "eval-privacy.json", _WITH_REFERENCE, evaluation=True, dvc_stage="evaluate"),
    Stage("forensics", "eval-forensics.json", _WITH_REFERENCE, evaluation=True, dvc_stage="evaluate"),
    Stage("inversion", "eval-inversion.json", _LOADED, evaluation=True, dvc_stage="evaluate"),
    Stage("leakage", "eval-leakage.json", _LOADED, evaluation=True, dvc_stage="evaluate"),
    Stage("validation", "validation.json", dvc_stage="validate"),
    Stage("gate", None, dvc_stage="gate"),
    Stage("publish", None, (Need("request", "publish", NOT_PUBLISHED_BY_REQUEST),)),
    Stage("version", None),
)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
EVALUATIONS: tuple[str, ...] = tuple(stage.name for stage in STAGES if stage.evaluation)
# Evidence the gate reads, in order, with the file each is recorded under in a DVC workspace.
EVIDENCE_FILES: dict[str, str] = {stage.name: stage.dvc_file for stage in STAGES if stage.dvc_file}
NOT_EVIDENCE: tuple[str, ...] = tuple(stage.name for stage in STAGES if stage.dvc_file is None)
# dvc.yaml's intake stages in order: the request (the input), one per group of the table's stages, the metrics.
DVC_STAGES: tuple[str, ...] = ("request", *dict.fromkeys(s.dvc_stage for s in STAGES if s.dvc_stage), "metrics")


def skip_reason(stage: str, recorded: Mapping[str, StageEvidence], request: Any) -> str | None:
    """Why ``stage`` is skipped given the evidence recorded so far and the request, or None: it runs."""
    for need in BY_NAME[stage].needs:
        reason = need.unmet(recorded, request)
        if reason is not None:
            return reason
    return None


def skipped(stage: str, reason: str) -> StageEvidence:
    return StageEvidence(stage=stage, status=Status.SKIPPED, reason=reason)
