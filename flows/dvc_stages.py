"""The intake stages as ``dvc repro`` runs them: each reads the previous stages' evidence from the
evidence folder, calls the same plain stage function the Prefect task wraps, and writes its evidence.

The order and the skip rules are the intake flow's (flows/intake.py): a stage whose prerequisite did
not complete is recorded as ``skipped`` with the reason; models are evaluated only after the scan
passed. The fetched model lives in a scratch folder that is never versioned (the manifest pins it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelgate.evidence import StageEvidence, Status, sha256_bytes, write_evidence
from modelgate.ledger.config import LedgerError
from modelgate.ledger.layout import EVALUATIONS, EVIDENCE_FILES
from modelgate.ledger.metrics import write_metrics
from modelgate.ledger.workspace import snapshot_policy
from modelgate.manifest import FileEntry, Manifest
from modelgate.pipeline import skip_reason, skipped
from modelgate.request import IntakeRequest, signature_path
from modelgate.settings import Settings, load_settings

REQUEST_FIELDS = tuple(IntakeRequest.model_fields)


def read_params(path: Path) -> dict[str, Any]:
    """The DVC params file, every section checked strictly first (an unknown key stops the stage)."""
    if not path.is_file():
        raise LedgerError(f"{path}: no params file (run the stage from the DVC project root)")
    from tasks.params import check_params_file

    check_params_file(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _write(folder: Path, evidence: StageEvidence, file: str | None = None) -> str:
    return write_evidence(folder, Path(file or EVIDENCE_FILES[evidence.stage]).stem, evidence)


def _read(folder: Path, stage: str) -> StageEvidence | None:
    path = folder / EVIDENCE_FILES[stage]
    return StageEvidence.model_validate_json(path.read_bytes()) if path.is_file() else None


def _recorded(folder: Path) -> dict[str, StageEvidence]:
    return {s: e for s in EVIDENCE_FILES if (e := _read(folder, s)) is not None}


def _skips(folder: Path, stage: str, request: IntakeRequest) -> StageEvidence | None:
    """The stage's skipped evidence, written, when the pipeline says so (modelgate/pipeline.py); else None."""
    reason = skip_reason(stage, _recorded(folder), request)
    if reason is None:
        return None
    evidence = skipped(stage, reason)
    _write(folder, evidence)
    return evidence


def load_request(folder: Path) -> IntakeRequest:
    path = folder / "request.json"
    if not path.is_file():
        raise LedgerError(f"{path}: no request (run the request stage first)")
    return IntakeRequest.model_validate_json(path.read_bytes())


def model_dir(scratch: Path) -> Path:
    return scratch / "model"


# --------------------------------------------------------------------------- stages


def request_stage(folder: Path, params_file: Path) -> IntakeRequest:
    """params.yaml ``intake:`` -> ``request.json`` (the flow writes the same file from its parameters)."""
    intake = read_params(params_file).get("intake") or {}
    request = IntakeRequest(**{k: intake[k] for k in REQUEST_FIELDS if intake.get(k) is not None})
    write_evidence(folder, "request", request)
    return request


def fetch_stage(folder: Path, scratch: Path, settings: Settings | None = None) -> StageEvidence:
    from tasks.fetch import fetch_stage as fetch

    request = load_request(folder)
    target = model_dir(scratch)
    shutil.rmtree(target, ignore_errors=True)
    evidence, _ = fetch(request.source, target, settings or load_settings())
    _write(folder, evidence)
    return evidence


def manifest_stage(folder: Path, scratch: Path) -> StageEvidence:
    from modelgate.manifest import manifest_stage as manifest

    request = load_request(folder)
    if (skip := _skips(folder, "manifest", request)) is not None:
        return skip
    evidence, _ = manifest(model_dir(scratch), request.expected_digest)
    _write(folder, evidence)
    return evidence


def _manifest(folder: Path) -> Manifest | None:
    """The manifest as the flow held it in memory: present unless hashing refused the folder."""
    evidence = _read(folder, "manifest")
    if evidence is None or not isinstance(evidence.details.get("files"), list):
        return None
    return Manifest(
        root_digest=str(evidence.metrics["manifest.root_digest"]),
        files=[FileEntry.model_validate(row) for row in evidence.details["files"]],
        total_bytes=int(evidence.metrics["manifest.total_bytes"]),  # type: ignore[arg-type]
    )


def signature_stage(folder: Path, scratch: Path, settings: Settings | None = None) -> StageEvidence:
    from modelgate.signing.stage import signature_stage as signature

    request = load_request(folder)
    if (skip := _skips(folder, "signature", request)) is not None:
        return skip
    manifest = _manifest(folder)
    assert manifest is not None, "the pipeline skips the signature without a manifest"
    root = model_dir(scratch)
    trust = (settings or load_settings()).trust_store
    evidence = signature(root, manifest, trust, signature_path(request, root))
    _write(folder, evidence)
    return evidence


def provenance_stage(folder: Path, scratch: Path) -> StageEvidence:
    from modelgate.provenance import provenance_stage as provenance

    request = load_request(folder)
    if (skip := _skips(folder, "provenance", request)) is not None:
        return skip
    fetched = _read(folder, "fetch")
    assert fetched is not None, "the pipeline skips provenance when fetch did not pass"
    evidence = provenance(
        scheme=str(fetched.metrics["fetch.scheme"]),
        source_host=str(fetched.metrics["fetch.source_host"]),
        revision=fetched.details.get("revision"),
        revision_requested=fetched.details.get("revision_requested"),
        expected_digest=request.expected_digest,
        model_dir=model_dir(scratch),
    )
    _write(folder, evidence)
    return evidence


def scan_stage(folder: Path, scratch: Path) -> StageEvidence:
    from modelgate.scan.sarif import to_sarif
    from modelgate.scan.stage import scan_stage as scan

    if (skip := _skips(folder, "scan", load_request(folder))) is not None:
        return skip
    evidence, report = scan(model_dir(scratch), _manifest(folder))
    _write(folder, evidence)
    (folder / "scan.sarif").write_text(json.dumps(to_sarif(report), indent=2))
    return evidence


def evaluate_stage(folder: Path, scratch: Path, params_file: Path) -> list[StageEvidence]:
    """As the flow: weights through the safe loader, the pinned reference, then the evaluations that apply;
    each one skipped for the pipeline's reason (modelgate/pipeline.py) when its prerequisites do not hold."""
    request = load_request(folder)
    params = read_params(params_file)  # checked strictly before anything runs
    results: list[StageEvidence] = []
    eval_model = scratch / "eval-model"
    if (skip := _skips(folder, "load", request)) is not None:
        results.append(skip)
    else:
        from modelgate.scan.stage import scan_stage as scan
        from tasks.load import load_stage

        _, report = scan(model_dir(scratch), _manifest(folder))
        shutil.rmtree(eval_model, ignore_errors=True)
        results.append(load_stage(model_dir(scratch), report, eval_model))
        _write(folder, results[-1])
    reference_dir = None
    if (skip := _skips(folder, "reference", request)) is not None:
        results.append(skip)
    else:
        from tasks.reference import reference_stage

        shutil.rmtree(scratch / "reference", ignore_errors=True)
        reference, reference_dir = reference_stage(
            request.reference, request.reference_digest, load_settings(), scratch
        )
        _write(folder, reference)
        results.append(reference)
    task = request.model_task.value
    for stage in EVALUATIONS:
        if (skip := _skips(folder, stage, request)) is not None:
            results.append(skip)
            continue
        from flows.evaluate import APPLIES, not_applicable, run_plain
        from tasks.evaluate.stage import merge_params

        if stage in APPLIES.get(task, ()):
            ref = str(reference_dir) if reference_dir else None
            settings = merge_params(params.get("evaluate") or {})
            evidence = run_plain(stage, str(eval_model), ref, str(request.eval_data), settings, str(folder))
        else:
            evidence = StageEvidence(stage=stage, status=Status.SKIPPED, reason=not_applicable(stage, task))
        _write(folder, evidence)
        results.append(evidence)
    return results


def validate_stage(folder: Path, params_file: Path) -> StageEvidence:
    from modelgate.validation.stage import validate_stage as validate

    section = read_params(params_file).get("validation") or {}
    evidence = validate(folder, section if isinstance(section, Mapping) else {})
    _write(folder, evidence)
    return evidence


def evidence_digests(folder: Path) -> dict[str, str]:
    """``request.json`` and every evidence file the gate reads, by name -> sha256 (as the flow records them)."""
    names = ["request.json", *EVIDENCE_FILES.values()]
    return {name: sha256_bytes((folder / name).read_bytes()) for name in names if (folder / name).is_file()}


def gate_stage(folder: Path, params_file: Path, settings: Settings | None = None) -> StageEvidence:
    from modelgate.gate import gate_stage as gate
    from modelgate.report import decision_markdown

    settings = settings or load_settings()
    request = load_request(folder)
    intake = read_params(params_file).get("intake") or {}
    stages = _recorded(folder)
    manifest = stages.get("manifest")
    root = manifest.metrics.get("manifest.root_digest") if manifest else None
    evidence, decision = gate(
        stages,
        policy_ref=request.policy,
        policy_dir=settings.policy_dir,
        name=request.name,
        version=request.version,
        root_digest=root if isinstance(root, str) else None,
        evidence_digests=evidence_digests(folder),
        run_id=str(intake.get("run_id") or "dvc-repro"),
    )
    write_evidence(folder, "gate", evidence)
    if decision is not None:
        decision.dvc_experiment = intake.get("experiment")
        write_evidence(folder, "decision", decision)
        (folder / "report.md").write_text(decision_markdown(decision))
        snapshot_policy(folder, decision)
    return evidence


def metrics_stage(folder: Path) -> Path:
    return write_metrics(folder)
