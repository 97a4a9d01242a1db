"""``modelgate automations apply|ls``: the Prefect automations of ``infra/prefect/automations.yaml``.

Both talk to the server named by ``PREFECT_API_URL``, else to the embedded one when it runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from modelgate.cli.common import GuardedGroup, note
from modelgate.terminal import echo, styled, table


def _connect() -> None:
    from modelgate.cli.common import use_running_services

    use_running_services()


@click.group("automations", cls=GuardedGroup)
def automations_group() -> None:
    """Prefect automations: a webhook on reject (infra/prefect/automations.yaml)."""


@automations_group.command("apply")
@click.option("--file", "path", type=click.Path(path_type=Path), help="Automations file (default: the project's).")
@click.option(
    "--webhook-url", help="URL of the file's webhooks (default: the variable each names, MODELGATE_WEBHOOK_URL)."
)
def apply_command(path: Path | None, webhook_url: str | None) -> None:
    """Create or update the webhook blocks and automations (idempotent, matched by name)."""
    from modelgate import automations

    _connect()
    config = automations.load_config(path)
    for item in automations.apply(config, webhook_url_override=webhook_url):
        note(f"{item.action:8} {item.kind:10} {item.name}  ({item.id})")
    if automations.triggers_enabled() is False:
        note(
            f"{styled('warning:', 'yellow', sys.stderr)} the server's triggers service is off "
            "(PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED=false): these automations will not fire"
        )


@automations_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the automations as JSON on stdout.")
def ls_command(as_json: bool) -> None:
    """List the automations on the server."""
    from modelgate import automations

    _connect()
    found = automations.list_automations()
    if as_json:
        click.echo(json.dumps([asdict(item) for item in found], indent=2))
    else:
        rows = [
            [item.name, "yes" if item.enabled else "no", item.trigger, "; ".join(item.actions), ", ".join(item.tags)]
            for item in found
        ]
        echo(table(("name", "enabled", "trigger", "actions", "tags"), rows, title="automations"))
    if automations.triggers_enabled() is False:
        warning = styled("warning:", "yellow", sys.stderr)
        note(f"{warning} the server's triggers service is off: automations do not fire")
