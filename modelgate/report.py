"""Human-readable decision report (markdown), published to the Prefect UI and kept with the evidence."""

from __future__ import annotations

from modelgate.policy.decision import Decision


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def decision_markdown(decision: Decision) -> str:
    """Decision, reasons, every rule with the values it saw, waivers, and the evidence digests."""
    icon = {"approved": "✅", "rejected": "❌"}.get(decision.decision, "⚠️")
    lines = [
        f"# {icon} {decision.model.name} {decision.model.version}: **{decision.decision.upper()}**",
        "",
        f"- root digest: `{decision.model.root_digest or '-'}`",
        f"- policy: `{decision.policy.name}` (`{decision.policy.digest}`)",
        f"- run: `{decision.run_id}` at {decision.decided_at.isoformat()}",
        "",
    ]
    if decision.reasons:
        why = "## Why it was rejected" if decision.decision == "rejected" else "## Why there is no decision (error)"
        lines += [why, "", *[f"- {_cell(r)}" for r in decision.reasons], ""]
    if decision.decision == "error":
        lines += ["A stage that errored cannot be judged: nothing is published. Fix the cause and re-run.", ""]
    if decision.warnings:
        lines += ["## Warnings (audit rules)", "", *[f"- {_cell(w)}" for w in decision.warnings], ""]
    lines += ["## Rules", "", "| rule | severity | action | verdict | saw |", "|---|---|---|---|---|"]
    for verdict in decision.rules:
        outcome = "waived" if verdict.waived else ("pass" if verdict.passed else "**fail**")
        seen = ", ".join(f"`{k}`={v!r}" for k, v in verdict.observed.items())
        lines.append(
            f"| {verdict.id} | {verdict.severity.value} | {verdict.failure_action.value} | {outcome} | {_cell(seen)} |"
        )
    if decision.waivers_considered:
        lines += ["", "## Waivers", "", "| waiver | applied | reason |", "|---|---|---|"]
        for waiver in decision.waivers_considered:
            lines.append(f"| {waiver.name} | {'yes' if waiver.applied else 'no'} | {_cell(waiver.reason)} |")
    lines += ["", "## Evidence", "", "| file | digest |", "|---|---|"]
    lines += [f"| {name} | `{digest}` |" for name, digest in sorted(decision.evidence.items())]
    return "\n".join(lines) + "\n"
