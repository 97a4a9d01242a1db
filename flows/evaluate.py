"""The evaluation subflow: the security and privacy evaluations of one model, with UI artifacts.

Callable from the intake flow (a subflow) or deployable on its own to a ``gpu`` work pool
(entrypoint ``flows/evaluate.py:evaluate``); a run holds one slot of the ``gpu`` concurrency limit
(``tag:gpu``) while it evaluates, so the limit keeps one evaluation run per GPU. Parameters come
from the ``evaluate:`` section of ``params.yaml``. Triggers, inversions and ROC curves are
published as markdown artifacts (PNGs inlined as data URIs, so the UI needs no file server), the
norms, robustness and forensics figures as table artifacts. ``python -m flows.evaluate MODEL_DIR``
runs the same stages without Prefect and writes the evidence JSON (what a DVC stage calls).

Started on its own, the subflow never reads an unscanned folder: ``model_dir`` must carry a load
record that verifies (the output of the intake's ``load`` stage), or it is scanned and converted
through the safe loader first; a folder the scan or the loader refuses is not evaluated at all.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.privacy_artifacts import publish_privacy_artifacts
from modelgate import run_owner
from modelgate.evidence import StageEvidence, Status, write_evidence
from modelgate.pipeline import EVALUATIONS
from modelgate.settings import load_settings
from modelgate.task_runners import evaluation_task_runner
from tasks.evaluate.harness import section_params
from tasks.evaluate.privacy.stage import (
    FORENSICS,
    INVERSION,
    LEAKAGE,
    MEMBERSHIP,
    PRIVACY,
    forensics_task,
    inversion_task,
    leakage_task,
    membership_task,
    privacy_task,
)
from tasks.evaluate.stage import (
    ADVERSARIAL,
    BACKDOOR,
    adversarial_task,
    backdoor_task,
    load_params,
    robustness_rows,
)
from tasks.load import EvaluationRefused, prepare_for_evaluation
from tasks.params import check_evaluate_override

IMAGE_TASK, TEXT_TASK = "image-classification", "text-generation"
GPU_LIMIT = "tag:gpu"  # the limit `modelgate serve` creates (`prefect concurrency-limit create gpu 1`)
# The slot's lease, renewed every 3/4 of it while the evaluation runs: a process killed mid-evaluation
# frees its slot within this plus the server's repossessor loop (15 s), not Prefect's default 300 s.
GPU_LEASE_S = 60.0  # the server refuses shorter leases
# Every evaluation stage, in the order the subflow runs them (the pipeline's); each task runs the ones that apply.
STAGES = EVALUATIONS
APPLIES: dict[str, tuple[str, ...]] = {
    IMAGE_TASK: (BACKDOOR, ADVERSARIAL, MEMBERSHIP, PRIVACY, FORENSICS, INVERSION),
    TEXT_TASK: (PRIVACY, FORENSICS, LEAKAGE),
}


@flow(
    name="evaluate",
    flow_run_name="evaluate-{model_task}",
    log_prints=True,
    validate_parameters=True,
    task_runner=evaluation_task_runner(),  # MODELGATE_TASK_RUNNER=thread|dask (modelgate/task_runners.py)
)
def evaluate(
    model_dir: str,
    model_task: str,
    eval_data: str,
    out_dir: str,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    reference_dir: str | None = None,
) -> dict[str, StageEvidence]:
    """Run the evaluations that apply to ``model_task`` on ``model_dir``; artifacts land under ``out_dir``.

    ``params`` overrides ``params.yaml``'s ``evaluate:`` section (section by section);
    ``reference_dir`` is the trusted checkpoint the privacy audit and weight forensics compare with.
    """
    check_evaluate_override(params)  # an unknown key or wrong type: the run stops before it evaluates
    settings = section_params(params, None, load_params())
    home = load_settings().home
    run_id = str(flow_run.get_id() or "")
    if run_id:  # a run whose process dies is reaped as Crashed by the next intake (modelgate/run_owner.py)
        run_owner.record(home, run_id)
    try:
        return _evaluate(model_dir, model_task, eval_data, out_dir, settings, model_name, reference_dir)
    finally:
        if run_id:
            run_owner.forget(home, run_id)


def _evaluate(
    model_dir: str,
    model_task: str,
    eval_data: str,
    out_dir: str,
    settings: dict[str, Any],
    model_name: str | None,
    reference_dir: str | None,
) -> dict[str, StageEvidence]:
    logger = get_run_logger()
    name = model_name or Path(model_dir).name  # before model_dir may become the loaded copy
    applies = APPLIES.get(model_task, ())
    results = {
        stage: StageEvidence(stage=stage, status=Status.SKIPPED, reason=not_applicable(stage, model_task))
        for stage in STAGES
        if stage not in applies
    }
    if not applies:
        return {stage: results[stage] for stage in STAGES}
    try:
        model_dir = str(_readable(model_dir, out_dir))
        reference_dir = str(_readable(reference_dir, out_dir, "reference-input")) if reference_dir else None
    except EvaluationRefused as exc:
        logger.error("not evaluated: %s", exc)
        return {**results, **_refused(str(exc), applies)}
    # One slot of the `gpu` limit for the whole subflow (one lease, not one per task): one evaluation
    # run per GPU. The tasks go to the flow's task runner: one at a time by default, fanned out with
    # MODELGATE_TASK_RUNNER=dask.
    with gpu_slot():
        futures = {stage: _run(stage, model_dir, reference_dir, eval_data, settings, out_dir) for stage in applies}
        for stage, future in futures.items():
            results[stage] = future.result()
            logger.info("%s: %s %s", stage, results[stage].status.value, results[stage].reason or "")
    try:
        publish_artifacts(results, name)
    except Exception as exc:  # noqa: BLE001 - artifacts are for people; the evidence is already complete
        logger.warning("could not publish the evaluation artifacts: %s: %s", type(exc).__name__, exc)
    return {stage: results[stage] for stage in STAGES}


@contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold one slot of the ``gpu`` limit while evaluating, when the limit exists (``modelgate serve`` makes it).

    Without the limit there is nothing to hold, so no lease is asked for: Prefect's ``strict=False``
    would skip it too, but only after a lease request (a server write, and a warning in every run's
    log). Reading the limit first costs one read.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
    except ObjectNotFound:
        yield
        return
    with concurrency(GPU_LIMIT, occupy=1, strict=False, lease_duration=GPU_LEASE_S):
        yield


def _run(
    stage: str,
    model_dir: str,
    reference_dir: str | None,
    eval_data: str,
    settings: dict[str, Any],
    out_dir: str,
    *,
    plain: bool = False,
) -> Any:
    """One evaluation submitted as a Prefect task (a future), or, ``plain``, the function the task wraps."""
    task = _TASKS[stage]
    call: Any = task.fn if plain else task.submit
    if stage in (BACKDOOR, ADVERSARIAL, MEMBERSHIP, INVERSION):
        return call(model_dir, eval_data, settings, out_dir)
    if stage == FORENSICS:
        return call(model_dir, reference_dir, settings, out_dir)
    return call(model_dir, reference_dir, eval_data, settings, out_dir)


def run_plain(
    stage: str, model_dir: str, reference_dir: str | None, eval_data: str, settings: dict[str, Any], out_dir: str
) -> StageEvidence:
    """One evaluation without Prefect (the DVC stage and ``python -m flows.evaluate``); ``model_dir`` must be loaded."""
    return _run(stage, model_dir, reference_dir, eval_data, settings, out_dir, plain=True)


_TASKS: dict[str, Any] = {
    BACKDOOR: backdoor_task,
    ADVERSARIAL: adversarial_task,
    MEMBERSHIP: membership_task,
    INVERSION: inversion_task,
    PRIVACY: privacy_task,
    FORENSICS: forensics_task,
    LEAKAGE: leakage_task,
}


def not_applicable(stage: str, model_task: str) -> str:
    """Why ``stage`` does not run on a ``model_task`` model (the skipped evidence's reason)."""
    tasks = [task for task, stages in APPLIES.items() if stage in stages]
    return f"model task {model_task!r}: the {stage} evaluation needs {' or '.join(tasks)}"


def _readable(model_dir: str, out_dir: str, work: str = "evaluation-input") -> Path:
    """The folder the evaluations may read (scanned and safely loaded first when it has no load record)."""
    folder, evidence = prepare_for_evaluation(Path(model_dir), Path(out_dir) / work)
    for item in evidence:
        write_evidence(Path(out_dir), f"{work}-{item.stage}", item)
    return folder


def _refused(reason: str, stages: tuple[str, ...]) -> dict[str, StageEvidence]:
    why = f"not evaluated: {reason}"
    return {stage: StageEvidence(stage=stage, status=Status.FAIL, reason=why) for stage in stages}


def publish_artifacts(results: dict[str, StageEvidence], name: str) -> None:
    """Triggers (markdown with inline PNGs), the norms and robustness tables, the privacy pages; keyed per model."""
    key = _key(name)
    backdoor = results.get(BACKDOOR)
    if backdoor is not None and backdoor.status in (Status.PASS, Status.FAIL):
        create_markdown_artifact(
            triggers_markdown(backdoor, name), key=f"backdoor-triggers-{key}", description="Neural Cleanse triggers"
        )
        create_table_artifact(
            backdoor.details["neural_cleanse"]["norms"], key=f"backdoor-norms-{key}", description="Trigger L1 norms"
        )
    adversarial = results.get(ADVERSARIAL)
    if adversarial is not None and adversarial.status is Status.PASS:
        create_table_artifact(
            robustness_rows(adversarial), key=f"adversarial-robustness-{key}", description="PGD robust accuracy"
        )
    publish_privacy_artifacts(results, key, name)


def _key(name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:60] or "model"


def triggers_markdown(evidence: StageEvidence, name: str) -> str:
    """A reviewer's page: the verdict, then every label's trigger (inline PNG) with its norm and index."""
    metrics, details = evidence.metrics, evidence.details
    targets = _int_list(metrics.get("backdoor.targets"))
    verdict = f"**backdoor suspected**: target label(s) {_labels(targets)}" if targets else "no backdoor found"
    threshold = details["neural_cleanse"]["config"]["anomaly_threshold"]
    lines = [
        f"# Backdoor detection: {name}",
        "",
        f"Verdict (Neural Cleanse and MM-BD combined, calibrated on clean models): {verdict}.",
        "",
        f"Neural Cleanse: anomaly index {metrics['backdoor.anomaly_index']:.2f} (its paper flags above "
        f"{threshold:g}), smallest trigger: label {metrics['backdoor.suspect_label']}; labels above "
        f"{threshold:g}: {_labels(_int_list(metrics.get('backdoor.suspect_labels')))}. MM-BD: p-value "
        f"{metrics['backdoor.mmbd_p_value']:.4f}, largest margin at label {metrics['backdoor.mmbd_suspect_label']}; "
        f"step-down names: {_labels(_int_list(metrics.get('backdoor.mmbd_suspect_labels')))}.",
        "",
        "| label | trigger (mask x pattern) | L1 norm | anomaly index | MM-BD margin |",
        "|---|---|---|---|---|",
    ]
    previews = details["artifacts"]["previews"]
    named = set(targets)
    for row, path in zip(details["neural_cleanse"]["norms"], previews, strict=True):
        data = base64.b64encode(Path(path).read_bytes()).decode()
        mark = " **<-**" if row["label"] in named else ""
        lines.append(
            f"| {row['label']} ({row['name']}){mark} | ![trigger {row['label']}](data:image/png;base64,{data}) "
            f"| {row['l1_norm']:.2f} | {row['anomaly_index']:.2f} | {row['mmbd_margin']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _int_list(value: object) -> list[int]:
    """A list-of-labels metric (absent in evidence older than the metric: empty)."""
    return [int(v) for v in value] if isinstance(value, list) else []


def _labels(labels: list[int]) -> str:
    return ", ".join(str(k) for k in labels) if labels else "none"


def main(argv: list[str] | None = None) -> int:
    """Run the evaluations that apply without Prefect; write ``eval-<stage>.json`` and ``metrics.json``."""
    parser = argparse.ArgumentParser(prog="python -m flows.evaluate", description=main.__doc__)
    parser.add_argument("model_dir", help="model folder (scanned and safely loaded first unless it is a load output)")
    parser.add_argument("--model-task", default=IMAGE_TASK, choices=sorted(APPLIES))
    parser.add_argument("--eval-data", default="sklearn:digits")
    parser.add_argument("--reference", default=None, help="reference checkpoint folder (privacy audit, forensics)")
    parser.add_argument("--out", default="evaluation")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the project's)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    out = Path(args.out)
    metrics: dict[str, Any] = {}
    try:
        model_dir = str(_readable(args.model_dir, str(out)))
        reference = str(_readable(args.reference, str(out), "reference-input")) if args.reference else None
    except EvaluationRefused as exc:
        print(f"error: not evaluated: {exc}")
        return 2
    for stage in APPLIES[args.model_task]:
        evidence = run_plain(stage, model_dir, reference, args.eval_data, params, str(out))
        write_evidence(out, f"eval-{stage}", evidence)
        metrics.update(evidence.metrics)
        metrics[f"stages.{stage}"] = evidence.status.value
        print(f"{stage}: {evidence.status.value} {evidence.reason or ''}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
