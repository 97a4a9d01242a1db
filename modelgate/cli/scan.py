"""``modelgate scan PATH``: the serialization scan on its own, for people and for CI.

Exit codes: 0 safe, 1 unsafe, 2 error (the path cannot be read, the SARIF file
cannot be written). The table goes to stdout; ``--json`` prints the report instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from modelgate.cli.common import EXIT_ERROR, EXIT_OK, EXIT_VERDICT, GuardedCommand
from modelgate.scan.driver import ScanError, scan_path
from modelgate.scan.findings import BLOCKING, ScanReport
from modelgate.scan.listing import location, ordered
from modelgate.terminal import binary_size, echo, error_line, safe_text, styled, table

EXIT_SAFE, EXIT_UNSAFE = EXIT_OK, EXIT_VERDICT
MAX_TABLE_FINDINGS = 50
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _print_table(report: ScanReport) -> None:
    """The files as a table, then each finding on its own lines (messages are long), as plain text."""
    out = sys.stdout
    rows = [[f.path, f.format, binary_size(f.size), f.verdict, str(len(f.findings))] for f in report.files]
    styles = [[None, None, None, "green" if f.verdict == "safe" else "red", None] for f in report.files]
    headers = ("file", "format", "size", "verdict", "findings")
    echo(table(headers, rows, title=f"modelgate scan: {report.root}", right=("size", "findings"), styles=styles))
    findings = ordered(report.findings)
    if findings:
        echo("findings:")
    for finding in findings[:MAX_TABLE_FINDINGS]:
        severity = finding.severity.value
        where = location(finding) + (f"  {finding.global_name}" if finding.global_name else "")
        echo(f"  {styled(f'{severity:8}', _STYLE[severity], out)} {finding.rule_id}  {safe_text(where)}")
        echo(f"           {safe_text(finding.message)}")
    if len(findings) > MAX_TABLE_FINDINGS:
        echo(f"... and {len(findings) - MAX_TABLE_FINDINGS} more (use --json or --sarif for all)")
    blocking = sum(1 for f in findings if f.category in BLOCKING)
    verdict = styled(report.verdict, "green" if report.verdict == "safe" else "red", out)
    echo(f"verdict: {verdict}  files: {len(report.files)}  blocking findings: {blocking}  ({report.duration_s:.2f} s)")


@click.command("scan", cls=GuardedCommand)
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
        _print_table(report)
    sys.exit(EXIT_SAFE if report.verdict == "safe" else EXIT_UNSAFE)


def _error(message: str) -> NoReturn:
    """One error line on stderr (plain text), exit 2."""
    error_line(message)
    sys.exit(EXIT_ERROR)
