"""The schema of every section of ``params.yaml``, from the defaults of the stages that read them.

``check_params_file`` is what a run calls before it starts (the CLI before it creates the flow run,
the intake flow before its first stage, the DVC stages before they read their section); the
evaluation subflow also checks its ``params`` override. Keys and types come from the defaults the
stages themselves use (the evaluation configs, ``ValidationParams``, ``IntakeRequest``), so there
is no second list to keep in step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelgate.params import Path_, Schema, check_document, check_section, read_document
from modelgate.request import IntakeRequest
from modelgate.settings import load_settings
from modelgate.validation.suites import ValidationParams

PARAMS_ENV = "MODELGATE_PARAMS_FILE"
# What the evidence ledger records beside the request in each experiment's intake: section.
RECORDED_INTAKE_KEYS = ("run_id", "experiment", "root_digest", "policy_digest", "modelgate_version")
EXAMPLES_DEFAULTS = {"seed": 0}


@cache
def evaluate_schema() -> dict[str, Any]:
    """The ``evaluate:`` tree: the security evaluations' defaults and each privacy section's.

    Imported on first use: the stage modules import Prefect (a params check runs before any flow
    exists, so it stays cheap), and ``tasks/evaluate/stage.py`` imports this module.
    """
    from tasks.evaluate.privacy.stage import SECTIONS
    from tasks.evaluate.stage import DEFAULT_PARAMS

    tree = dict(DEFAULT_PARAMS)
    for name, defaults in SECTIONS.values():
        tree[name] = dict(defaults)
    return tree


def _intake_problems(section: Mapping[str, Any]) -> list[tuple[Path_, str]]:
    """The request fields (strictly typed, as JSON would carry them) plus the ledger's recorded keys."""
    from modelgate.params import nearest

    fields = tuple(IntakeRequest.model_fields)
    problems: list[tuple[Path_, str]] = []
    for key in section:
        if key not in fields and key not in RECORDED_INTAKE_KEYS:
            close = nearest(str(key), [*fields, *RECORDED_INTAKE_KEYS])
            hint = f"did you mean {close!r}?" if close else "not a request field"
            problems.append(((str(key),), f"unknown key ({hint})"))
    request = {k: v for k, v in section.items() if k in fields and v is not None}
    if "source" in request and "name" in request and "version" in request:
        try:
            IntakeRequest.model_validate_json(json.dumps(request, default=str), strict=True)
        except ValidationError as exc:
            for error in exc.errors():
                where = tuple(str(p) for p in error["loc"])
                problems.append((where, str(error["msg"]).removeprefix("Value error, ")))
    return problems


def sections() -> dict[str, Schema]:
    return {
        "examples": EXAMPLES_DEFAULTS,
        "evaluate": evaluate_schema(),
        "intake": _intake_problems,
        "validation": asdict(ValidationParams()),
    }


def params_file(path: str | Path | None = None) -> Path:
    """The params file a run reads: the one given, ``$MODELGATE_PARAMS_FILE``, else the project's."""
    return Path(path or os.environ.get(PARAMS_ENV) or load_settings().project / "params.yaml")


def check_params_file(path: str | Path | None = None) -> Path:
    """Check every section of the run's params file; ``ParamsError`` (file, line, key, nearest name)."""
    file = params_file(path)
    if not file.is_file():
        if path or os.environ.get(PARAMS_ENV):
            from modelgate.params import ParamsError

            raise ParamsError(f"{file}: no such params file")
        return file
    data, line_of = read_document(file)
    check_document(data, sections(), source=str(file), line_of=line_of)
    return file


def check_evaluate_override(params: Mapping[str, Any] | None, source: str = "the evaluate run's params") -> None:
    """An ``evaluate:``-shaped override (the evaluate flow's ``params`` parameter) checked like the file."""
    if params is not None:
        check_section(params, evaluate_schema(), section="evaluate", source=source)
