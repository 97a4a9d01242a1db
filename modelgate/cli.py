"""The ``modelgate`` command: a thin layer over the Python API.

Heavy imports (Prefect, torch, rich) happen inside the commands that need them, so
``modelgate --help``, ``modelgate scan`` and the consumer commands start fast.

Exit codes are the same for every command (docs/cli.md lists each command's): 0 the positive
answer, 1 the negative verdict the command exists to give (rejected, unsafe, not verified,
refused, different) and nothing else, 2 anything that went wrong. Whatever goes wrong is one
plain-text line on stderr, never a traceback (``MODELGATE_DEBUG=1`` shows it).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from modelgate import __version__
from modelgate.cli_base import EXIT_APPROVED, EXIT_ERROR, EXIT_REJECTED, GuardedGroup, fail, note
from modelgate.terminal import echo, styled

# Subcommands that live in their own modules, imported only when used (fast --help and start-up).
_LAZY_COMMANDS = {
    "policy": "modelgate.cli_policy:policy_group",
    "registry": "modelgate.cli_registry:registry_group",
    "audit": "modelgate.cli_audit:audit_group",
    "automations": "modelgate.cli_automations:automations_group",
    "stage": "modelgate.cli_stage:stage_group",
    "pull": "modelgate.cli_registry:pull_command",
    "scan": "modelgate.cli_scan:scan_command",
    "demo": "modelgate.demo.cli:demo_group",
    "manifest": "modelgate.cli_signing:manifest_command",
    "verify": "modelgate.cli_signing:verify_command",
    "keygen": "modelgate.cli_signing:keygen_command",
    "sign": "modelgate.cli_signing:sign_command",
    "serve": "modelgate.cli_serve:serve_command",
}


class _Group(GuardedGroup):
    """Loads subcommands lazily; errors are one line (GuardedGroup)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS and cmd_name not in self.commands:
            module_name, attr = _LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{_LAZY_COMMANDS[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
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


def use_running_services(registry_role: str | None = None) -> None:
    """Point Prefect and boto3 at the embedded services when they run and nothing else is configured.

    ``registry_role`` ("publisher", "consumer") picks the embedded S3 identity the registry
    client uses; without it the admin identity of the embedded install applies.
    """
    from modelgate import services as svc

    env = svc.client_env()
    for key, value in env.items():
        os.environ.setdefault(key, value)
    if registry_role and "MODELGATE_S3_ENDPOINT" in env:
        access, secret = svc.s3_identity(registry_role)
        os.environ.setdefault("MODELGATE_REGISTRY_ACCESS_KEY", access)
        os.environ.setdefault("MODELGATE_REGISTRY_SECRET_KEY", secret)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Runs send a heartbeat every 30 s: a run whose process dies is marked Crashed by the
    # modelgate-crashed-runs automation (infra/prefect/automations.yaml) instead of staying Running.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@main.command()
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
def intake(
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
    from modelgate.cli_intake import run_intake

    outcome = run_intake(request, live=not as_json and sys.stderr.isatty())
    if as_json:
        click.echo(outcome.model_dump_json(indent=2))
    sys.exit({"approved": EXIT_APPROVED, "rejected": EXIT_REJECTED}.get(outcome.decision, EXIT_ERROR))


if __name__ == "__main__":
    main()
