"""Runs the intake flow in this process with a live per-stage progress table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from modelgate import progress

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


def run_intake(request: IntakeRequest, *, live: bool) -> IntakeOutcome:
    """Run the flow; show progress on stderr when ``live``; print the decision summary."""
    from modelgate.cli import use_running_services

    use_running_services(registry_role="publisher")
    from flows.intake import intake

    console = Console(stderr=True, soft_wrap=True)
    table = _ProgressTable()
    if live:
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
    _print_outcome(console, outcome)
    return outcome


def _print_outcome(console: Console, outcome: IntakeOutcome) -> None:
    style = {"approved": "bold green", "rejected": "bold red"}.get(outcome.decision, "bold yellow")
    console.print(
        f"[{style}]{outcome.decision.upper()}[/{style}] {outcome.name} {outcome.version}"
        f"  root={outcome.root_digest or '-'}"
    )
    for reason in outcome.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)
    for finding in outcome.findings:
        console.print(f"    finding: {finding}", highlight=False, markup=False)
    for warning in outcome.warnings:
        console.print(f"  warning: {warning}", highlight=False, markup=False)
    console.print(f"  evidence: {outcome.evidence_dir}", highlight=False, markup=False)
