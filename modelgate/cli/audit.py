"""``modelgate audit``: answer an auditor from the evidence ledger.

``list`` the recorded intakes, ``diff`` two of them (params and metrics, via dvc), ``restore`` one
run's full evidence and check it against its decision record, ``reproduce`` one run with
``dvc repro`` and compare its metrics exactly. Runs are named by run id (or a unique prefix),
experiment name or commit. See docs/audit.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from modelgate.cli.common import EXIT_OK, EXIT_VERDICT, GuardedGroup, note
from modelgate.terminal import echo, styled, table

EXIT_DIFFERENT = EXIT_VERDICT


def _config() -> Any:
    from modelgate.cli.common import use_running_services
    from modelgate.ledger.config import load_ledger_config

    use_running_services()
    return load_ledger_config()


def _short(digest: str | None, width: int = 19) -> str:
    return (digest[:width] + "…") if digest and len(digest) > width else (digest or "-")


@click.group(name="audit", cls=GuardedGroup)
def audit_group() -> None:
    """Audit recorded intakes: list, diff, restore, reproduce (the evidence ledger, DVC experiments)."""


@audit_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the intakes as JSON on stdout.")
def list_command(as_json: bool) -> None:
    """Every recorded intake: decision, name, version, root digest, date."""
    from modelgate.ledger.audit import list_intakes

    config = _config()
    intakes = list_intakes(config)
    if as_json:
        click.echo(json.dumps([asdict(i) for i in intakes], indent=2))
        return
    rows = [
        [
            intake.run_id[:8],
            intake.decision,
            intake.name,
            intake.version,
            _short(intake.root_digest),
            intake.decided_at[:19].replace("T", " "),
            intake.experiment,
        ]
        for intake in intakes
    ]
    colour = {"approved": "green", "rejected": "red"}
    styles = [[None, colour.get(i.decision, "yellow"), None, None, None, None, None] for i in intakes]
    headers = ("run", "decision", "name", "version", "root digest", "decided at", "experiment")
    echo(table(headers, rows, styles=styles))
    note(f"{len(intakes)} intake(s) in {config.remote}; `dvc exp show -A` in {config.checkout} shows them all")


def _changes_table(title: str, changes: list[Any]) -> str:
    return table(("key", "old", "new"), [[c.key, repr(c.old), repr(c.new)] for c in changes], title=title)


@audit_group.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON on stdout.")
def diff_command(run_a: str, run_b: str, as_json: bool) -> None:
    """Params and metrics that differ between RUN_A and RUN_B (dvc params diff / dvc metrics diff)."""
    from modelgate.ledger.audit import diff_intakes

    diff = diff_intakes(_config(), run_a, run_b)
    if as_json:
        data = {
            "a": asdict(diff.a),
            "b": asdict(diff.b),
            "params": [asdict(c) for c in diff.params],
            "metrics": [asdict(c) for c in diff.metrics],
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    note(f"a = {diff.a.experiment} ({diff.a.decision})   b = {diff.b.experiment} ({diff.b.decision})")
    echo(_changes_table("params", diff.params) if diff.params else "params: no difference")
    echo(_changes_table("metrics", diff.metrics) if diff.metrics else "metrics: no difference")


@audit_group.command("restore")
@click.argument("run_id")
@click.option("--dest", required=True, type=click.Path(path_type=Path, file_okay=False), help="New folder.")
def restore_command(run_id: str, dest: Path) -> None:
    """Restore RUN_ID's full evidence into DEST and verify it against its decision record's digests."""
    from modelgate.ledger.audit import restore

    restored = restore(_config(), run_id, dest)
    total = len(restored.verified) + len(restored.mismatched) + len(restored.missing)
    note(
        f"restored {restored.files} files of {restored.intake.experiment} ({restored.intake.decision}) "
        f"into {restored.folder}; {len(restored.verified)}/{total} evidence files match decision.json"
    )
    for name in restored.mismatched:
        note(f"  {styled('digest mismatch', 'red', sys.stderr)}: {name}")
    for name in restored.missing:
        note(f"  {styled('missing', 'red', sys.stderr)}: {name}")
    sys.exit(EXIT_DIFFERENT if restored.mismatched or restored.missing else EXIT_OK)


@audit_group.command("reproduce")
@click.argument("run_id")
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False), help="Copy the re-run's evidence here.")
def reproduce_command(run_id: str, keep: Path | None) -> None:
    """Re-run RUN_ID's stages with `dvc repro` from its recorded params; exit 0 if the metrics match exactly."""
    from modelgate.ledger.audit import reproduce

    note(f"reproducing {run_id} with dvc repro (the whole intake runs again) ...")
    result = reproduce(_config(), run_id, keep=keep)
    if result.identical:
        note(
            f"{styled('reproduced', 'green', sys.stderr)} {result.intake.experiment}: "
            f"all {len(result.recorded)} metrics match exactly"
        )
        sys.exit(EXIT_OK)
    echo(_changes_table(f"{result.intake.experiment}: recorded vs reproduced", result.differences))
    note(styled(f"{len(result.differences)} metric(s) differ", "red", sys.stderr))
    sys.exit(EXIT_DIFFERENT)
