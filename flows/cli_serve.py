"""``modelgate serve``: the Prefect UI's front door (a thin layer over ``flows.deployments``).

In the foreground it registers the deployments and runs what the UI starts until stopped; with
``--background`` it starts that same process as a managed service (pid and log under
``$MODELGATE_HOME/services``), returns once the deployments are registered, and ``modelgate
services down`` stops it.
"""

from __future__ import annotations

import os
import sys

import click

from modelgate.cli.common import GuardedCommand, note
from modelgate.errors import ServiceError
from modelgate.terminal import styled


def _ui_address() -> str:
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise ServiceError(
            "no Prefect server to register the deployments with: start one with `modelgate services up` "
            "(or set PREFECT_API_URL)"
        )
    return api.rstrip("/").removesuffix("/api")


@click.command("serve", cls=GuardedCommand)
@click.option("--background", is_flag=True, help="Start as a managed service and return (stop: services down).")
@click.option("--limit", type=click.IntRange(min=1), help="Flow runs at once (default 4, MODELGATE_SERVE_LIMIT).")
@click.option(
    "--gpu-slots", type=click.IntRange(min=1), help="Evaluation tasks at once, the `gpu` limit (MODELGATE_GPU_SLOTS)."
)
@click.option(
    "--setup-only", is_flag=True, help="Create the work pools and the `gpu` limit, then exit (prefect.yaml + workers)."
)
def serve_command(background: bool, limit: int | None, gpu_slots: int | None, setup_only: bool) -> None:
    """Register the intake, evaluate and regate deployments and run what the Prefect UI starts."""
    from modelgate.cli.common import use_running_services

    if limit:
        os.environ["MODELGATE_SERVE_LIMIT"] = str(limit)
    if gpu_slots:
        os.environ["MODELGATE_GPU_SLOTS"] = str(gpu_slots)
    use_running_services(registry_role="publisher")
    ui = _ui_address()
    if setup_only:
        from flows.deployments import ensure_infrastructure

        done = ensure_infrastructure()
        created = ", ".join(done["work_pools_created"]) or "none (they exist)"
        note(f"work pools created: {created}; `gpu` concurrency limit: {done['gpu_slots']}  ({ui})")
        return
    if background:
        from modelgate import services

        state = services.start("serve", timeout_s=240)
        note(f"{styled('serving', 'green', sys.stderr)} intake, evaluate, regate (pid {state.pid}, log {state.log})")
        note(f"Prefect UI: {ui}  (Deployments > intake > Run > Custom run)")
        return
    from flows.deployments import serve_deployments

    note(f"Prefect UI: {ui}  serving intake, evaluate, regate; Ctrl-C stops")
    serve_deployments()
