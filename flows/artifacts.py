"""The intake run's report in the Prefect UI: the decision and its reasons where the run was started.

Published once per run, after the gate, publish and version stages, so the report can link what
they produced: the evidence folder and files, the Great Expectations Data Docs, the registry URI
and the DVC experiment. Keys are per model (``intake-<name>``, ``intake-rules-<name>``), so the
Artifacts page shows each model's history of decisions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from modelgate.evidence import StageEvidence, Status
from modelgate.policy.decision import Decision
from modelgate.report import decision_markdown


def model_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:60] or "model"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def report_links(folder: Path, stages: dict[str, StageEvidence], decision: Decision | None) -> list[tuple[str, str]]:
    """(label, target) for everything a reviewer may open next: evidence, Data Docs, registry, ledger."""
    from modelgate.validation.stage import data_docs_url

    links = [("evidence folder", str(folder))]
    for name in ("decision.json", "report.md", "scan.sarif"):
        if (folder / name).is_file():
            links.append((name, str(folder / name)))
    if docs := data_docs_url(folder):
        links.append(("Data Docs (Great Expectations)", docs))
    publish = stages.get("publish")
    if publish is not None and publish.metrics.get("publish.uri"):
        links.append(("registry", str(publish.metrics["publish.uri"])))
    if decision is not None and decision.dvc_experiment:
        links.append(("DVC experiment", decision.dvc_experiment))
    return links


def _link(label: str, target: str) -> str:
    if target.startswith(("file://", "https://", "http://")):
        return f"- {label}: [{target}]({target})"
    return f"- {label}: `{target}`"


def report_markdown(
    decision: Decision | None, stages: dict[str, StageEvidence], links: list[tuple[str, str]], name: str, version: str
) -> str:
    """The decision (rules, values seen, waivers, evidence digests), then each stage, then the links."""
    if decision is not None:
        head = decision_markdown(decision)
    else:
        gate = stages.get("gate")
        head = f"# ❌ {name} {version}: **ERROR**\n\nNo decision: {gate.reason if gate else 'the gate did not run'}\n"
    lines = [head.rstrip("\n"), "", "## Stages", "", "| stage | status | detail |", "|---|---|---|"]
    for stage, evidence in stages.items():
        status = evidence.status.value
        shown = f"**{status}**" if evidence.status in (Status.FAIL, Status.ERROR) else status
        lines.append(f"| {stage} | {shown} | {_cell((evidence.reason or '')[:200])} |")
    lines += ["", "## Links", "", *[_link(label, target) for label, target in links]]
    return "\n".join(lines) + "\n"


def rule_rows(decision: Decision) -> list[dict[str, Any]]:
    """One row per rule: its verdict and the values it saw, for the table artifact."""
    return [
        {
            "rule": verdict.id,
            "severity": verdict.severity.value,
            "action": verdict.failure_action.value,
            "verdict": "waived" if verdict.waived else ("pass" if verdict.passed else "fail"),
            "saw": ", ".join(f"{k}={v!r}" for k, v in verdict.observed.items()),
            "waiver": verdict.waiver or "",
            "reason": verdict.reason,
        }
        for verdict in decision.rules
    ]


def publish_report(
    decision: Decision | None, stages: dict[str, StageEvidence], folder: Path, name: str, version: str
) -> str:
    """Create the markdown report and the rules table of one run; returns the report's artifact key."""
    key = model_key(name)
    verdict = decision.decision if decision is not None else "error"
    create_markdown_artifact(
        key=f"intake-{key}",
        markdown=report_markdown(decision, stages, report_links(folder, stages, decision), name, version),
        description=f"Intake decision for {name} {version}: {verdict}",
    )
    if decision is not None:
        create_table_artifact(
            key=f"intake-rules-{key}",
            table=rule_rows(decision),
            description=f"Policy rules for {name} {version}: verdicts and the values each saw",
        )
    return f"intake-{key}"


__all__ = ["model_key", "publish_report", "report_links", "report_markdown", "rule_rows"]
