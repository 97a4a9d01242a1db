"""The intake flow: source → fetch → manifest → signature → provenance → scan → policy gate.

Each stage is a Prefect task wrapping a plain function that returns evidence. A
stage whose prerequisite did not complete is recorded as ``skipped`` with the
reason the pipeline table gives (``modelgate/pipeline.py``, shared with the DVC
stages), and the gate reads every skip. Every run writes its evidence folder
``evidence/<name>/<version>/<run-id>/``.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from pydantic import BaseModel

from flows.artifacts import publish_report
from flows.evaluate import evaluate
from modelgate import run_owner
from modelgate.events import emit_decision_event
from modelgate.evidence import StageEvidence, Status, write_evidence
from modelgate.manifest import Manifest
from modelgate.pipeline import EVALUATIONS, NO_REGISTRY, skip_reason, skipped
from modelgate.policy.decision import Decision
from modelgate.progress import emit
from modelgate.registry.config import registry_configured
from modelgate.report import decision_markdown
from modelgate.request import IntakeRequest, signature_path
from modelgate.scan.findings import ScanReport
from modelgate.scan.sarif import to_sarif
from modelgate.settings import Settings, load_settings
from tasks.caching import results_dir
from tasks.fetch import fetch_task
from tasks.gate import gate_task
from tasks.load import load_task
from tasks.manifest import manifest_task
from tasks.params import check_params_file
from tasks.provenance import provenance_task
from tasks.publish import publish_task
from tasks.reference import reference_task
from tasks.scan import scan_model
from tasks.signature import signature_task
from tasks.validate import data_docs_url, validate_task
from tasks.version import experiment_name, version_task


class IntakeOutcome(BaseModel):
    """What one intake run decided, and where its evidence is."""

    run_id: str
    name: str
    version: str
    decision: Literal["approved", "rejected", "error"]
    reasons: list[str]
    findings: list[str]
    warnings: list[str]
    root_digest: str | None
    evidence_dir: str
    model_dir: str | None
    stages: dict[str, str]


class _Run:
    """Collects the evidence of one run and writes each piece as it arrives."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stages: dict[str, StageEvidence] = {}
        self.digests: dict[str, str] = {}

    def record(self, evidence: StageEvidence) -> StageEvidence:
        self.stages[evidence.stage] = evidence
        self.digests[f"{evidence.stage}.json"] = write_evidence(self.folder, evidence.stage, evidence)
        emit(evidence.stage, evidence.status.value, evidence)
        return evidence

    def skip(self, stage: str, reason: str) -> StageEvidence:
        return self.record(skipped(stage, reason))

    def skips(self, stage: str, request: IntakeRequest) -> bool:
        """Record ``stage`` as skipped when the pipeline says so (modelgate/pipeline.py); whether it was."""
        reason = skip_reason(stage, self.stages, request)
        if reason is not None:
            self.skip(stage, reason)
        return reason is not None


def _publish(run: _Run, request: IntakeRequest, decision: Decision, model_dir: Path, manifest: Manifest) -> None:
    """Approved models go to the registry when one is configured; the attestation is the commit."""
    if run.skips("publish", request):
        return
    if not registry_configured():
        run.skip("publish", NO_REGISTRY)
    else:
        emit("publish", "running")
        run.record(publish_task(decision, model_dir, manifest, run.folder))


def _evaluate(
    run: _Run, request: IntakeRequest, model_dir: Path | None, report: ScanReport | None, workspace: Path
) -> None:
    """Security and privacy evaluations, on weights that reach them only through the safe loader."""
    if run.skips("load", request) or model_dir is None or report is None:
        for stage in ("reference", *EVALUATIONS):
            run.skips(stage, request)
        return
    emit("load", "running")
    eval_model = workspace / "eval-model"
    run.record(load_task(model_dir, report, eval_model))
    if run.skips("reference", request):
        for stage in EVALUATIONS:
            run.skips(stage, request)
        return
    emit("reference", "running")
    reference_evidence, reference_dir = reference_task(
        request.reference, request.reference_digest, load_settings(), workspace
    )
    run.record(reference_evidence)
    assert request.eval_data, "the pipeline skips the evaluations when the request names no data"
    for stage in EVALUATIONS:
        emit(stage, "running")
    # A persisted subflow result: a retried intake run does not evaluate the same weights again.
    # No heartbeat thread of its own: the subflow runs in this process, whose intake run already sends
    # heartbeats, and stopping a second heartbeat thread costs up to a second per run (Prefect joins it).
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        results = evaluate.with_options(persist_result=True, result_storage=results_dir())(
            str(eval_model),
            request.model_task.value,
            request.eval_data,
            str(run.folder),
            model_name=request.name,
            reference_dir=str(reference_dir) if reference_dir else None,
        )
    for stage in EVALUATIONS:
        evidence = results[stage]
        # The subflow skips what it cannot run; the pipeline names why (a refused reference), as dvc repro does.
        reason = skip_reason(stage, run.stages, request)
        if reason is not None and evidence.status is Status.SKIPPED:
            evidence = skipped(stage, reason)
        run.record(evidence)


def _link_data_docs(request: IntakeRequest, folder: Path) -> None:
    """Link the run's Great Expectations Data Docs from the Prefect UI (one key per model)."""
    docs = data_docs_url(folder)
    if docs:
        create_link_artifact(
            link=docs,
            link_text="Data Docs",
            key="validation-" + re.sub(r"[^a-z0-9-]+", "-", request.name.lower()).strip("-"),
            description=f"Great Expectations Data Docs of the evidence of {request.name} {request.version}",
        )


def _run_id() -> str:
    return str(flow_run.get_id() or uuid.uuid4())


@flow(
    name="intake",
    flow_run_name="{request.name}-{request.version}",
    log_prints=True,
    validate_parameters=True,
    persist_result=True,  # with the tasks' cache policies, a retried run resumes where it failed
    result_storage=results_dir(),
)
def intake(request: IntakeRequest) -> IntakeOutcome:
    """Take one model from its source to an approve/reject decision with evidence."""
    settings: Settings = load_settings()
    check_params_file()  # a mistyped parameter stops the run before its first stage (modelgate/params.py)
    logger = get_run_logger()
    run_id = _run_id()
    run = _Run(settings.evidence_dir / request.name / request.version / run_id)
    run.digests["request.json"] = write_evidence(run.folder, "request", request)
    workspace = settings.workspace_dir / run_id
    logger.info("intake %s %s from %s (run %s)", request.name, request.version, request.source, run_id)
    run_owner.record(settings.home, run_id)
    try:
        _reap_crashed_runs(settings, run_id)
        return _take_in(request, settings, run, run_id, workspace)
    finally:
        run_owner.forget(settings.home, run_id)


def _reap_crashed_runs(settings: Settings, run_id: str) -> None:
    """Runs left "Running" by a dead process of this host become Crashed (a re-run after kill -9)."""
    logger = get_run_logger()
    try:
        reaped = run_owner.reap_dead_runs(settings.home, ["intake", "evaluate"], exclude=run_id)
    except Exception as exc:  # noqa: BLE001 - housekeeping: never stops an intake
        logger.warning("could not check for crashed intake runs: %s: %s", type(exc).__name__, exc)
        return
    for crashed in reaped:
        logger.warning("intake run %s was left Running by a process that died: marked Crashed", crashed)


def _take_in(request: IntakeRequest, settings: Settings, run: _Run, run_id: str, workspace: Path) -> IntakeOutcome:
    """The stages, the gate, publish and version of one run (the flow body)."""
    logger = get_run_logger()
    emit("fetch", "running")
    fetch_evidence, fetched = fetch_task(request.source, workspace / "model", settings)
    run.record(fetch_evidence)

    # Each stage runs unless the pipeline (modelgate/pipeline.py) names why not; a fetch that passed
    # always hands over its folder, and a manifest with a file list always its Manifest.
    manifest = None
    scan_report: ScanReport | None = None
    if not run.skips("manifest", request) and fetched is not None:
        emit("manifest", "running")
        manifest_evidence, manifest = manifest_task(fetched.root, request.expected_digest)
        run.record(manifest_evidence)
    if not run.skips("signature", request) and fetched is not None and manifest is not None:
        emit("signature", "running")
        signature = signature_path(request, fetched.root)
        run.record(signature_task(fetched.root, manifest, settings.trust_store, signature))
    if not run.skips("provenance", request) and fetched is not None:
        emit("provenance", "running")
        run.record(
            provenance_task(
                scheme=fetched.scheme,
                source_host=fetched.source_host,
                revision=fetched.revision,
                revision_requested=fetched.revision_requested,
                expected_digest=request.expected_digest,
                model_dir=fetched.root,
            )
        )
    if not run.skips("scan", request) and fetched is not None:
        emit("scan", "running")
        scan_evidence, scan_report = scan_model(fetched.root, manifest)
        run.record(scan_evidence)
        (run.folder / "scan.sarif").write_text(json.dumps(to_sarif(scan_report), indent=2))

    _evaluate(run, request, fetched.root if fetched else None, scan_report, workspace)

    emit("validation", "running")
    run.record(validate_task(run.folder))
    _link_data_docs(request, run.folder)

    root_digest = manifest.root_digest if manifest is not None else None
    emit("gate", "running")
    gate_evidence, decision = gate_task(
        dict(run.stages),
        policy_ref=request.policy,
        policy_dir=settings.policy_dir,
        name=request.name,
        version=request.version,
        root_digest=root_digest,
        evidence_digests=dict(run.digests),
        run_id=run_id,
    )
    run.record(gate_evidence)
    if decision is not None:
        decision.dvc_experiment = experiment_name(request.name, request.version, run_id)
        write_evidence(run.folder, "decision", decision)
        (run.folder / "report.md").write_text(decision_markdown(decision))
        if decision.approved and manifest is not None and fetched is not None:
            _publish(run, request, decision, fetched.root, manifest)

    emit("version", "running")
    run.record(version_task(run.folder, request=request, decision=decision, run_id=run_id))
    publish_report(decision, dict(run.stages), run.folder, request.name, request.version)

    errored = [s for s, e in run.stages.items() if e.status is Status.ERROR]
    verdict: Literal["approved", "rejected", "error"] = "error" if errored or decision is None else decision.decision
    # A stage that crashed or could not run explains the outcome better than the rules it tripped.
    reasons = [f"{s} error: {run.stages[s].reason}" for s in errored]
    reasons += list(decision.reasons) if decision else []
    outcome = IntakeOutcome(
        run_id=run_id,
        name=request.name,
        version=request.version,
        decision=verdict,
        reasons=reasons,
        findings=[
            f"{s}: {e.reason}" for s, e in run.stages.items() if e.status is Status.FAIL and e.reason and s != "gate"
        ],
        warnings=list(decision.warnings) if decision else [],
        root_digest=root_digest,
        evidence_dir=str(run.folder),
        model_dir=str(fetched.root) if fetched else None,
        stages={s: e.status.value for s, e in run.stages.items()},
    )
    emit_decision_event(outcome, decision)
    logger.info("decision for %s %s: %s %s", request.name, request.version, verdict, "; ".join(reasons))
    return outcome
