"""``python -m flows.cli_stage STAGE`` (or ``modelgate stage STAGE``): one intake stage, as dvc.yaml runs it.

Each command calls the plain stage function the Prefect task wraps and writes the same evidence file
into the evidence folder (default ``evidence/current``). Run from the DVC project root; the stages'
order, deps and outputs are declared in ``dvc.yaml``. Exit 0 whenever the evidence was written
(a finding is evidence, the gate decides), 2 when it could not be.
"""

from __future__ import annotations

from pathlib import Path

import click

from modelgate.cli.common import GuardedGroup
from modelgate.ledger.layout import EVIDENCE_DIR, SCRATCH_DIR

EVIDENCE_OPTION = click.option(
    "--evidence",
    "evidence",
    type=click.Path(path_type=Path, file_okay=False),
    default=EVIDENCE_DIR,
    show_default=True,
    help="Evidence folder of the run.",
)
SCRATCH_OPTION = click.option(
    "--scratch",
    type=click.Path(path_type=Path, file_okay=False),
    default=SCRATCH_DIR,
    show_default=True,
    help="Scratch folder holding the fetched model (never versioned).",
)
PARAMS_OPTION = click.option(
    "--params",
    "params_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="DVC params file (intake:, evaluate:, validation: sections).",
)


def _report(stage: str, status: str, reason: str | None) -> None:
    click.echo(f"{stage}: {status}{f' ({reason})' if reason else ''}")


@click.group(name="stage", cls=GuardedGroup)
def stage_group() -> None:
    """Run one intake stage the way `dvc repro` does (see dvc.yaml)."""


@stage_group.command("request")
@EVIDENCE_OPTION
@PARAMS_OPTION
def request_command(evidence: Path, params_file: Path) -> None:
    """Write request.json from params.yaml's intake: section."""
    from flows import dvc_stages as stages

    request = stages.request_stage(evidence, params_file)
    click.echo(f"request: {request.name} {request.version} from {request.source}")


@stage_group.command("fetch")
@EVIDENCE_OPTION
@SCRATCH_OPTION
def fetch_command(evidence: Path, scratch: Path) -> None:
    """Fetch the requested model into the scratch folder; write fetch.json."""
    from flows import dvc_stages as stages

    result = stages.fetch_stage(evidence, scratch)
    _report("fetch", result.status.value, result.reason)


@stage_group.command("manifest")
@EVIDENCE_OPTION
@SCRATCH_OPTION
def manifest_command(evidence: Path, scratch: Path) -> None:
    """Hash every file of the fetched model; write manifest.json."""
    from flows import dvc_stages as stages

    result = stages.manifest_stage(evidence, scratch)
    _report("manifest", result.status.value, result.reason)


@stage_group.command("signature")
@EVIDENCE_OPTION
@SCRATCH_OPTION
def signature_command(evidence: Path, scratch: Path) -> None:
    """Verify the model's signature against the trust store; write signature.json."""
    from flows import dvc_stages as stages

    result = stages.signature_stage(evidence, scratch)
    _report("signature", result.status.value, result.reason)


@stage_group.command("provenance")
@EVIDENCE_OPTION
@SCRATCH_OPTION
def provenance_command(evidence: Path, scratch: Path) -> None:
    """Record source, revision and model-card facts; write provenance.json."""
    from flows import dvc_stages as stages

    result = stages.provenance_stage(evidence, scratch)
    _report("provenance", result.status.value, result.reason)


@stage_group.command("scan")
@EVIDENCE_OPTION
@SCRATCH_OPTION
def scan_command(evidence: Path, scratch: Path) -> None:
    """Scan every model file by allowlist; write scan.json and scan.sarif."""
    from flows import dvc_stages as stages

    result = stages.scan_stage(evidence, scratch)
    _report("scan", result.status.value, result.reason)


@stage_group.command("evaluate")
@EVIDENCE_OPTION
@SCRATCH_OPTION
@PARAMS_OPTION
def evaluate_command(evidence: Path, scratch: Path, params_file: Path) -> None:
    """Backdoor and adversarial evaluations (params.yaml evaluate:); write eval-*.json and their tables."""
    from flows import dvc_stages as stages

    for result in stages.evaluate_stage(evidence, scratch, params_file):
        _report(result.stage, result.status.value, result.reason)


@stage_group.command("validate")
@EVIDENCE_OPTION
@PARAMS_OPTION
def validate_command(evidence: Path, params_file: Path) -> None:
    """Great Expectations suites over the evidence tables; write validation.json and data_docs/."""
    from flows import dvc_stages as stages

    result = stages.validate_stage(evidence, params_file)
    _report("validation", result.status.value, result.reason)


@stage_group.command("gate")
@EVIDENCE_OPTION
@PARAMS_OPTION
def gate_command(evidence: Path, params_file: Path) -> None:
    """Evaluate the policy; write gate.json, decision.json, report.md and the policy snapshot."""
    from flows import dvc_stages as stages

    result = stages.gate_stage(evidence, params_file)
    _report("gate", result.status.value, result.reason)


@stage_group.command("metrics")
@EVIDENCE_OPTION
def metrics_command(evidence: Path) -> None:
    """Write the flat metrics.json and the plot tables (plots/)."""
    from flows import dvc_stages as stages

    click.echo(f"metrics: {stages.metrics_stage(evidence)}")


if __name__ == "__main__":
    stage_group()
