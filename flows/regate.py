"""Re-gate flow: judge every registry entry's stored evidence under the current policy and waivers.

Run it after a policy change or when waivers expire (e.g. on a daily schedule): entries that no
longer pass are revoked with the failing rules as the reason, and ``modelgate pull`` refuses them.
The work is ``modelgate.registry.regate_registry`` (a plain function); this flow adds logging and
a report artifact in the Prefect UI.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from modelgate.registry.regate import RegateReport, regate_registry


def report_markdown(report: RegateReport) -> str:
    lines = [
        f"# Re-gate of the registry ({report.checked_at:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Policies from `{report.policy_dir}`{' (dry run: nothing revoked)' if report.dry_run else ''}.",
        "",
        "| model | version | result | reason |",
        "|---|---|---|---|",
    ]
    lines += [f"| {e.name} | {e.version} | {e.status} | {e.reason.replace('|', '/')} |" for e in report.entries]
    return "\n".join(lines) + "\n"


@flow(name="regate", log_prints=True, validate_parameters=True)
def regate(policy_dir: str | None = None, names: list[str] | None = None, dry_run: bool = False) -> RegateReport:
    """Re-evaluate published versions (all, or ``names``) and revoke those that no longer pass."""
    logger = get_run_logger()
    report = regate_registry(policy_dir=Path(policy_dir) if policy_dir else None, names=names, dry_run=dry_run)
    for entry in report.entries:
        if entry.status in ("revoked", "fail", "error"):
            logger.warning("%s@%s %s: %s", entry.name, entry.version, entry.status, entry.reason)
    logger.info(
        "re-gated %d entries: %d pass, %d revoked, %d fail, %d error",
        len(report.entries),
        report.count("pass"),
        report.count("revoked"),
        report.count("fail"),
        report.count("error"),
    )
    create_markdown_artifact(key="registry-regate", markdown=report_markdown(report), description="Registry re-gate")
    return report
