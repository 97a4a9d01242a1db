"""The one contract every evaluation stage keeps, so a new evaluation cannot get it subtly wrong.

An evaluation is a body returning ``StageEvidence`` run under ``guarded``: a model or request it
cannot evaluate (``NotEvaluable``) is ``skipped`` with the reason, bad evaluation data
(``EvalDataError``) is an ``error`` with its one line, and any other exception is ``error``
evidence (``modelgate.evidence.run_stage``): the gate fails closed, a crash never passes. The rest
is what every stage opens with (refuse what it cannot run on, require the data, pick the device,
start the evidence with the inputs' digests and the device record) and how each reads its section
of the ``evaluate:`` params over its defaults. This module imports no Prefect and no stage module,
so every stage, security or privacy, can import it at the top.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.evidence import StageEvidence, Status, run_stage, sha256_bytes
from tasks.evaluate.adapters import ModelInfo, NotEvaluable, describe_model, image_classifier_refusal
from tasks.evaluate.data import EvalDataError
from tasks.evaluate.device import describe_device, select_device

if TYPE_CHECKING:
    import torch

NO_EVAL_DATA = "no evaluation data named in the request"


def guarded(stage: str, body: Callable[[], StageEvidence]) -> StageEvidence:
    """Refusals become ``skipped``, data problems ``error`` with their one line, crashes ``error``."""

    def run() -> StageEvidence:
        try:
            return body()
        except NotEvaluable as exc:
            return StageEvidence(stage=stage, status=Status.SKIPPED, reason=str(exc))
        except EvalDataError as exc:
            return StageEvidence(stage=stage, status=Status.ERROR, reason=str(exc))

    return run_stage(stage, run)


def output_dir(out_dir: str | Path | None) -> Path:
    """Where a stage writes its artifacts: the folder given, else a fresh temporary one (never the cwd)."""
    return Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="modelgate-eval-"))


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes, the form every digest in the evidence takes."""
    return sha256_bytes(Path(path).read_bytes())


def section_params(settings: Mapping[str, Any] | None, name: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Section ``name`` of the ``evaluate:`` settings (``None``: ``settings`` is the section) over ``defaults``.

    Merged one level deep, so a partial nested mapping (``shadow: {epochs: 2}``) keeps the other
    defaults of that mapping; an absent or empty section or nested mapping keeps the defaults. A
    section whose defaults have ``device`` inherits the top-level ``device`` unless it names its own.
    The keys and types themselves are checked strictly before a run (``tasks/params.py``).
    """
    outer: Mapping[str, Any] = settings or {}
    given: Mapping[str, Any] = (outer.get(name) if name is not None else outer) or {}
    merged = copy.deepcopy(dict(defaults))
    for key, value in given.items():
        if isinstance(merged.get(key), dict) and (value is None or isinstance(value, Mapping)):
            merged[key] = {**merged[key], **(value or {})}
        else:
            merged[key] = value
    if name is not None and "device" in defaults and "device" in outer and "device" not in given:
        merged["device"] = outer["device"]
    return merged


def refuse_unknown(params: Mapping[str, Any], defaults: Mapping[str, Any], what: str, also: Iterable[str] = ()) -> None:
    """``ValueError`` naming the first parameter that is neither a default's key nor in ``also``."""
    unknown = sorted(set(params) - set(defaults) - set(also))
    if unknown:
        raise ValueError(f"{what}: unknown parameter {unknown[0]!r}")


def image_classifier_info(model_dir: str | Path) -> ModelInfo:
    """What the model declares, or ``NotEvaluable`` when the image evaluations cannot run on it."""
    info = describe_model(model_dir)
    refusal = image_classifier_refusal(info)
    if refusal:
        raise NotEvaluable(refusal)
    return info


def require_eval_data(eval_data: str | None, reason: str = NO_EVAL_DATA) -> str:
    """The evaluation data the request names, or ``NotEvaluable`` (skipped, not failed) when it names none."""
    if not eval_data:
        raise NotEvaluable(reason)
    return eval_data


def stage_device(params: Mapping[str, Any]) -> torch.device:
    """The device the params ask for (``auto`` when they say nothing): CUDA when present, else the CPU."""
    return select_device(str(params.get("device", "auto")))


def opened_evidence(
    stage: str, device: torch.device, inputs: Mapping[str, str], details: Mapping[str, Any]
) -> StageEvidence:
    """``pass`` evidence that records what was read and what ran it, before the stage adds its figures.

    ``inputs`` are the digests of what the stage read; ``details`` its opening entries (the model,
    the data), followed by the device record; ``tools`` start with torch and the device.
    """
    device_info = describe_device(device)
    return StageEvidence(
        stage=stage,
        status=Status.PASS,
        inputs=dict(inputs),
        tools={"torch": device_info["torch"], "device": device_info["device"]},
        details={**details, "device": device_info},
    )


__all__ = [
    "NO_EVAL_DATA",
    "file_digest",
    "guarded",
    "image_classifier_info",
    "opened_evidence",
    "output_dir",
    "refuse_unknown",
    "require_eval_data",
    "section_params",
    "stage_device",
]
