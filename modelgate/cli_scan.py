"""``modelgate scan PATH``: the serialization scan on its own, for people and for CI.

Exit codes: 0 safe, 1 unsafe, 2 error (the path cannot be read, the SARIF file
cannot be written). The table goes to stdout; ``--json`` prints the report instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from modelgate.scan.driver import ScanError, scan_path
from modelgate.scan.findings import BLOCKING, ScanReport
from modelgate.scan.listing import location, ordered

if TYPE_CHECKING:
    from rich.console import Console

EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2
MAX_TABLE_FINDINGS = 50
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _print_table(report: ScanReport, console: Console) -> None:
    from rich.table import Table

    files = Table(title=f"modelgate scan: {report.root}", title_justify="left")
    for column in ("file", "format", "size", "verdict", "findings"):
        files.add_column(column, justify="right" if column in ("size", "findings") else "left")
    for f in report.files:
        verdict = "[green]safe[/green]" if f.verdict == "safe" else "[red]unsafe[/red]"
        files.add_row(f.path, f.format, _human_size(f.size), verdict, str(len(f.findings)))
    console.print(files)
    findings = ordered(report.findings)
    if findings:
        table = Table(title="findings", title_justify="left")
        for column in ("severity", "rule", "where", "global", "message"):
            table.add_column(column, overflow="fold")
        for finding in findings[:MAX_TABLE_FINDINGS]:
            severity = finding.severity.value
            table.add_row(
                f"[{_STYLE[severity]}]{severity}[/{_STYLE[severity]}]",
                finding.rule_id,
                location(finding),
                finding.global_name or "",
                finding.message,
            )
        console.print(table)
        if len(findings) > MAX_TABLE_FINDINGS:
            console.print(f"... and {len(findings) - MAX_TABLE_FINDINGS} more (use --json or --sarif for all)")
    blocking = sum(1 for f in findings if f.category in BLOCKING)
    colour = "green" if report.verdict == "safe" else "red"
    console.print(
        f"verdict: [{colour}]{report.verdict}[/{colour}]  files: {len(report.files)}  "
        f"blocking findings: {blocking}  ({report.duration_s:.2f} s)",
        highlight=False,
    )


@click.command("scan")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--sarif", "sarif_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write SARIF 2.1.0.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON instead of a table.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Files scanned in parallel.")
@click.option("--digests", is_flag=True, help="Also record each file's sha256 (of the very bytes scanned).")
def scan_command(path: Path, sarif_path: Path | None, as_json: bool, workers: int | None, digests: bool) -> None:
    """Scan a model folder or file for unsafe serialization; never loads it.

    Exit 0 when safe, 1 when unsafe, 2 when the path cannot be scanned.
    """
    try:
        report = scan_path(path, workers=workers, digests=digests)
    except ScanError as exc:
        _error(str(exc))
    if sarif_path is not None:
        from modelgate.scan.sarif import to_sarif

        try:
            sarif_path.write_text(json.dumps(to_sarif(report), indent=2))
        except OSError as exc:
            _error(f"cannot write SARIF to {sarif_path}: {exc.strerror or exc}")
    if as_json:
        payload = {"verdict": report.verdict, "counts": report.counts(), **report.model_dump(mode="json")}
        click.echo(json.dumps(payload, indent=2))
    else:
        from rich.console import Console

        _print_table(report, Console())
    sys.exit(EXIT_SAFE if report.verdict == "safe" else EXIT_UNSAFE)


def _error(message: str) -> NoReturn:
    """One red error line on stderr, exit 2 (rich is imported only on this path and for the table)."""
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(EXIT_ERROR)
