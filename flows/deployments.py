"""The Prefect deployments behind the UI's front door, and the process that runs what the UI starts.

* ``intake/intake``: the intake flow. Its form is generated from ``IntakeRequest`` (descriptions,
  the ``model_task`` enum, patterns the server validates); the defaults take in the demo's signed
  example, so "Run" with the defaults works after ``make run``.
* ``evaluate/evaluate``: the evaluation subflow on its own, tagged ``gpu`` (its tasks carry the
  ``gpu`` tag; ``prefect.yaml`` puts it on the ``gpu`` work pool).
* ``regate/regate``: re-judge every registry entry under the current policy and waivers.

``serve_deployments`` registers them and executes their runs in this process (``prefect.serve``),
the one-machine default. ``ensure_infrastructure`` creates, idempotently, the ``gpu`` tag
concurrency limit (evaluations per GPU at once) and the ``default`` and ``gpu`` process work pools
that the ``prefect.yaml`` + ``prefect worker start`` path uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from modelgate import __version__
from modelgate.settings import Settings, load_settings, positive_int

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

GPU_TAG = "gpu"
WORK_POOLS = ("default", "gpu")
GPU_SLOTS_ENV = "MODELGATE_GPU_SLOTS"  # evaluation tasks at once (one per GPU); default 1
SERVE_LIMIT_ENV = "MODELGATE_SERVE_LIMIT"  # flow runs at once in the serve process; default 4
DEMO_MODEL = "digits-cnn-signed"
DEMO_VERSION = "1.0.0-ui"
DEMO_EVAL_DATA = "sklearn:digits"


def default_request(settings: Settings | None = None) -> dict[str, Any]:
    """The intake form's defaults: the demo's signed example, evaluated on the digits, as the UI shows them."""
    from modelgate.request import IntakeRequest

    settings = settings or load_settings()
    request = IntakeRequest(
        source=str(settings.home / "examples" / DEMO_MODEL),
        name=DEMO_MODEL,
        version=DEMO_VERSION,
        eval_data=DEMO_EVAL_DATA,
    )
    return request.model_dump(mode="json", exclude_none=True)


def build_deployments(settings: Settings | None = None) -> list[RunnerDeployment]:
    """The three deployments, their entrypoints as module paths (importable from any working folder)."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.types.entrypoint import EntrypointType

    from flows.evaluate import evaluate
    from flows.intake import intake
    from flows.regate import regate

    common: dict[str, Any] = {"version": __version__, "entrypoint_type": EntrypointType.MODULE_PATH}
    built = [
        intake.to_deployment(
            name="intake",
            description="Take one model in: fetch, verify, scan, evaluate, gate, publish. "
            "The decision report is the run's `intake-<name>` artifact.",
            tags=["intake"],
            parameters={"request": default_request(settings)},
            **common,
        ),
        evaluate.to_deployment(
            name="evaluate",
            description="Backdoor, robustness and privacy evaluations of safely loaded weights (GPU pool).",
            tags=[GPU_TAG, "evaluate"],
            **common,
        ),
        regate.to_deployment(
            name="regate",
            description="Re-judge every registry entry under the current policy and waivers; revoke what fails.",
            tags=["registry"],
            **common,
        ),
    ]
    # ``to_deployment`` dispatches on the event loop: called from synchronous code it returns the deployment.
    if not all(isinstance(d, RunnerDeployment) for d in built):
        raise RuntimeError("build_deployments() must be called outside a running event loop")
    return cast("list[RunnerDeployment]", built)


def gpu_slots() -> int:
    return positive_int(GPU_SLOTS_ENV, 1)


def serve_limit() -> int:
    return positive_int(SERVE_LIMIT_ENV, 4)


def ensure_gpu_limit(slots: int | None = None) -> int:
    """Create or update the ``gpu`` tag concurrency limit (Prefect 3: a global limit named ``tag:gpu``)."""
    from prefect.client.orchestration import get_client

    slots = slots or gpu_slots()
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=slots)
    return slots


def ensure_work_pools(names: tuple[str, ...] = WORK_POOLS) -> list[str]:
    """Create the ``process`` work pools that do not exist yet; returns the ones created (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    created = []
    with get_client(sync_client=True) as client:
        for name in names:
            pool = WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=template,
                description=f"modelgate {name} pool (process workers: prefect worker start --pool {name})",
                concurrency_limit=gpu_slots() if name == GPU_TAG else None,  # one evaluation run per GPU
            )
            try:
                client.create_work_pool(pool)
            except ObjectAlreadyExists:
                continue
            created.append(name)
    return created


def ensure_infrastructure() -> dict[str, Any]:
    """The ``gpu`` concurrency limit and the work pools; what was set up, for the CLI to print."""
    return {"gpu_slots": ensure_gpu_limit(), "work_pools_created": ensure_work_pools()}


def register_deployments(settings: Settings | None = None) -> list[str]:
    """Register the deployments without serving them (a worker or a later ``serve`` runs them)."""
    return [str(d.apply()) for d in build_deployments(settings)]


def serve_deployments(*, limit: int | None = None) -> None:
    """Register the deployments and execute their runs in this process until it is stopped."""
    from prefect import serve

    ensure_infrastructure()
    serve(*build_deployments(), limit=limit or serve_limit(), pause_on_shutdown=False)


__all__ = [
    "GPU_TAG",
    "WORK_POOLS",
    "build_deployments",
    "default_request",
    "ensure_gpu_limit",
    "ensure_infrastructure",
    "ensure_work_pools",
    "register_deployments",
    "serve_deployments",
]
