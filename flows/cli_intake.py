"""``modelgate intake``: runs the intake flow in this process with a live per-stage progress table.

The intake side registers this command with the core CLI (the ``modelgate.commands`` entry points
in pyproject.toml), so the core never imports it; installed without the intake extra, the command
is one line naming the extra."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from modelgate import progress
from modelgate.cli.common import EXIT_APPROVED, EXIT_ERROR, EXIT_REJECTED, GuardedCommand, fail
from modelgate.terminal import echo, safe_text, styled

if TYPE_CHECKING:
    from flows.intake import IntakeOutcome
    from modelgate.evidence import StageEvidence
    from modelgate.request import IntakeRequest

STYLE = {"pass": "green", "fail": "red", "error": "bold red", "skipped": "yellow", "running": "cyan"}


class _ProgressTable:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, str]] = {s: ("pending", "", "") for s in progress.STAGES}
        self.started: dict[str, float] = {}

    def update(self, stage: str, state: str, evidence: StageEvidence | None) -> None:
        if state == "running":
            self.started[stage] = time.perf_counter()
            self.rows[stage] = ("running", "", "")
            return
        duration = f"{evidence.duration_s:.2f}s" if evidence and evidence.duration_s is not None else ""
        self.rows[stage] = (state, duration, _summary(evidence))

    def render(self) -> Table:
        table = Table("stage", "status", "time", "detail", title="intake", title_justify="left")
        for stage, (state, duration, detail) in self.rows.items():
            style = STYLE.get(state, "dim")
            table.add_row(stage, f"[{style}]{state}[/{style}]", duration, escape(detail))
        return table


def _summary(evidence: StageEvidence | None) -> str:
    if evidence is None:
        return ""
    if evidence.reason:
        return evidence.reason[:160]
    interesting = (
        "fetch.total_bytes",
        "manifest.root_digest",
        "signature.signer",
        "provenance.license",
        "scan.verdict",
        "scan.formats",
    )
    return ", ".join(f"{k.split('.', 1)[1]}={evidence.metrics[k]}" for k in interesting if k in evidence.metrics)


def preflight() -> None:
    """Check what would otherwise crash or silently weaken the run, before the flow run exists: every
    environment setting and every section of the params file (a typo is one line and exit 2)."""
    from modelgate.registry.config import RegistryConfig, registry_configured
    from modelgate.settings import load_settings
    from modelgate.task_runners import runner_name
    from tasks.params import check_params_file

    load_settings()
    runner_name()
    if registry_configured():
        RegistryConfig.from_env()
    check_params_file()  # a mistyped key or value: one line naming the file, line, key and nearest name


def _quiet_prefect_console() -> None:
    """Prefect's console handlers off (its logs still go to the API: the run's page shows them): the
    CLI's own progress and outcome are what a user reads, and a crash stays one line, not Prefect's
    traceback of the failed run. ``MODELGATE_DEBUG=1`` keeps them."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    from modelgate.cli.common import DEBUG_ENV

    if os.environ.get(DEBUG_ENV):
        return
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)


def run_intake(request: IntakeRequest, *, live: bool) -> IntakeOutcome:
    """Run the flow; show progress on stderr when ``live``; print the decision summary."""
    from modelgate.cli.common import use_running_services

    use_running_services(registry_role="publisher")
    preflight()
    from flows.intake import intake

    _quiet_prefect_console()

    table = _ProgressTable()
    if live:
        console = Console(stderr=True, soft_wrap=True)
        with Live(table.render(), console=console, refresh_per_second=8, transient=False) as display:

            def on_event(stage: str, state: str, evidence: StageEvidence | None) -> None:
                table.update(stage, state, evidence)
                display.update(table.render())

            unsubscribe = progress.subscribe(on_event)
            try:
                outcome = intake(request)
            finally:
                unsubscribe()
    else:
        outcome = intake(request)
    _print_outcome(outcome)
    return outcome


def _print_outcome(outcome: IntakeOutcome) -> None:
    """The decision and its reasons on stderr, as plain text (reasons quote model files and messages)."""
    style = {"approved": "green", "rejected": "red"}.get(outcome.decision, "yellow")
    decision = styled(outcome.decision.upper(), style, sys.stderr)
    lines = [f"{decision} {outcome.name} {outcome.version}  root={outcome.root_digest or '-'}"]
    lines += [f"  - {reason}" for reason in outcome.reasons]
    lines += [f"    finding: {finding}" for finding in outcome.findings]
    lines += [f"  warning: {warning}" for warning in outcome.warnings]
    lines.append(f"  evidence: {outcome.evidence_dir}")
    for line in lines:
        echo(safe_text(line), sys.stderr)


@click.command("intake", cls=GuardedCommand)
@click.argument("source")
@click.option("--name", required=True, help="Registry name to publish as.")
@click.option("--version", "version", required=True, help="Registry version to publish as.")
@click.option("--signature", help="Signature file (default: model.sig / modelgate.sig inside the model).")
@click.option("--expected-digest", help="Pin: expected root digest sha256:<hex>.")
@click.option("--policy", default="default", show_default=True, help="Policy name or path.")
@click.option("--task", "model_task", default="image-classification", show_default=True, help="Model task.")
@click.option("--eval-data", help="Evaluation data reference.")
@click.option("--reference", help="Trusted checkpoint of the same architecture (privacy audit, weight forensics).")
@click.option("--reference-digest", help="The reference's pinned root digest sha256:<hex> (required with --reference).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout.")
def intake_command(
    source: str,
    name: str,
    version: str,
    signature: str | None,
    expected_digest: str | None,
    policy: str,
    model_task: str,
    eval_data: str | None,
    reference: str | None,
    reference_digest: str | None,
    as_json: bool,
) -> None:
    """Run the intake flow on SOURCE; exit 0 approved, 1 rejected, 2 error.

    SOURCE is a local path, file://, s3://bucket/prefix, https://... or hf://org/repo@revision.
    """
    from pydantic import ValidationError

    from modelgate.request import IntakeRequest

    try:
        request = IntakeRequest(
            source=source,
            name=name,
            version=version,
            signature=signature,
            expected_digest=expected_digest,
            policy=policy,
            model_task=model_task,  # type: ignore[arg-type]
            eval_data=eval_data,
            reference=reference,
            reference_digest=reference_digest,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        fail(f"invalid request: {where}: {first['msg'].removeprefix('Value error, ')}")
    outcome = run_intake(request, live=not as_json and sys.stderr.isatty())
    if as_json:
        click.echo(outcome.model_dump_json(indent=2))
    sys.exit({"approved": EXIT_APPROVED, "rejected": EXIT_REJECTED}.get(outcome.decision, EXIT_ERROR))
