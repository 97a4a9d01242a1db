"""The root ``modelgate`` group: the core commands by module, the intake side's by entry point.

Heavy imports (Prefect, torch) happen inside the commands that need them, so ``modelgate --help``,
``modelgate scan`` and the consumer commands start fast. Exit codes and errors: ``common.py``.
"""

from __future__ import annotations

import importlib
import sys

import click

from modelgate import __version__
from modelgate.cli.common import GuardedGroup, fail, missing_extra, note
from modelgate.terminal import echo, styled

# Subcommands that live in their own modules, imported only when used (fast --help and start-up).
_LAZY_COMMANDS = {
    "policy": "modelgate.cli.policy:policy_group",
    "registry": "modelgate.cli.registry:registry_group",
    "audit": "modelgate.cli.audit:audit_group",
    "automations": "modelgate.cli.automations:automations_group",
    "pull": "modelgate.cli.registry:pull_command",
    "scan": "modelgate.cli.scan:scan_command",
    "manifest": "modelgate.cli.signing:manifest_command",
    "verify": "modelgate.cli.signing:verify_command",
    "keygen": "modelgate.cli.signing:keygen_command",
    "sign": "modelgate.cli.signing:sign_command",
}


# The intake side (flows/) registers its commands (intake, stage, serve, demo) as entry points of this
# group (pyproject.toml): the core finds them by name and never imports flows or tasks itself.
ENTRY_POINTS = "modelgate.commands"
INTAKE_SIDE = ("intake", "stage", "serve", "demo")  # named in the help even where the extra is missing


def _entry_point(name: str) -> str | None:
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINTS, name=name)
    return next((f"{ep.module}:{ep.attr}" for ep in found), None)


def _load(name: str, target: str | None) -> click.Command:
    """The command behind ``target``; an intake-side command whose extra is missing becomes ``_unavailable``."""
    if target is None:
        return _unavailable(name, None)
    module_name, attr = target.split(":")
    try:
        command = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if name in INTAKE_SIDE and missing_extra(name, exc.name):
            return _unavailable(name, exc.name)
        raise
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def _unavailable(name: str, missing: str | None) -> click.Command:
    """Listed in ``--help`` like the others; run (with any arguments, ``--help`` too), it is the one line, exit 2."""
    message = missing_extra(f"modelgate {name}", missing) or f"modelgate {name} is not installed"

    def refuse() -> None:
        fail(message)

    return click.Command(
        name,
        callback=refuse,
        short_help="(needs the intake extra)",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class _Group(GuardedGroup):
    """Loads subcommands lazily (the core's by module, the intake side's by entry point); errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS, *INTAKE_SIDE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            target = _LAZY_COMMANDS.get(cmd_name) or _entry_point(cmd_name)
            if target is not None or cmd_name in INTAKE_SIDE:
                self.add_command(_load(cmd_name, target), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelgate")
def main() -> None:
    """modelgate: governed intake of open-source models.

    \b
    Engineers:       modelgate intake SOURCE --name N --version V
    Policy authors:  modelgate policy validate|test|explain
    Auditors:        modelgate audit list|diff|restore|reproduce
    Consumers:       modelgate pull NAME[@VERSION|:ALIAS] --dest DIR, modelgate registry ls|show
    Anyone:          modelgate manifest | verify | scan
    Operators:       modelgate services up|down|status, modelgate demo build|run
    Prefect UI:      modelgate serve [--background]
    """


@main.group()
def services() -> None:
    """Start, stop and inspect the embedded services (S3 server, Prefect server) on 127.0.0.1."""


@services.command("up")
@click.argument("names", nargs=-1)
def services_up(names: tuple[str, ...]) -> None:
    """Start the services (all by default). Idempotent: running services are left alone."""
    from modelgate import services as svc

    for state in svc.up(list(names) or None):
        note(f"{styled('up', 'green', sys.stderr)}  {state.name:8} {state.url}  (pid {state.pid}, log {state.log})")
    _print_env(svc.client_env())


@services.command("down")
@click.argument("names", nargs=-1)
def services_down(names: tuple[str, ...]) -> None:
    """Stop the services this install started (never anything else)."""
    from modelgate import services as svc

    stopped = svc.down(list(names) or None)
    note("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@services.command("status")
@click.option("--env", "as_env", is_flag=True, help="Print shell exports that point clients at the services.")
def services_status(as_env: bool) -> None:
    """Show which services run, where, and their logs."""
    import shlex

    from modelgate import services as svc
    from modelgate.terminal import table

    if as_env:
        for key, value in svc.client_env().items():
            click.echo(f"export {key}={shlex.quote(value)}")
        return
    rows, styles = [], []
    for name, spec in svc.load_specs().items():
        state = svc.read_state(name)
        if state:
            rows.append([name, "running", state.url, str(state.pid), state.log])
        else:
            rows.append([name, "stopped", f"127.0.0.1:{spec.port}", "-", "-"])
        styles.append([None, "green" if state else "dim", None, None, None])
    echo(table(("service", "state", "address", "pid", "log"), rows, styles=styles))


def _print_env(env: dict[str, str]) -> None:
    if "PREFECT_API_URL" in env:
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        note(f"Prefect UI: {ui}")
    note('Point a shell at them: eval "$(modelgate services status --env)"')

