"""JSON Schema checks of policy documents, reported with file, line and field.

The schemas in ``policies/schema/`` are the single description of the document
format: editors autocomplete from them and the loader validates against them.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from modelgate.errors import PolicyError
from modelgate.policy.model import POLICY_KIND, TEST_KIND, WAIVER_KIND
from modelgate.policy.yamlio import PathPart, Problem, YamlDocument
from modelgate.settings import load_settings

SCHEMA_FILES = {
    POLICY_KIND: "model-intake-policy.schema.json",
    WAIVER_KIND: "policy-waiver.schema.json",
    TEST_KIND: "policy-test.schema.json",
}
MAX_MESSAGE = 240


def schema_dir() -> Path:
    """The shipped schemas: beside this checkout's code first (they version with it), else the policy folder."""
    candidates = [
        Path(__file__).resolve().parents[2] / "policies" / "schema",
        load_settings().policy_dir / "schema",
    ]
    for candidate in candidates:
        if (candidate / SCHEMA_FILES[POLICY_KIND]).is_file():
            return candidate
    raise PolicyError(f"policy JSON Schemas not found (looked in {', '.join(map(str, candidates))})")


@lru_cache(maxsize=4)
def _validators(directory: Path) -> dict[str, Draft202012Validator]:
    """One validator per kind; cross-schema $refs resolve through a registry keyed by $id."""
    schemas: dict[str, dict[str, Any]] = {}
    registry: Registry[Any] = Registry()
    for kind, file_name in SCHEMA_FILES.items():
        schema = json.loads((directory / file_name).read_text(encoding="utf-8"))
        schemas[kind] = schema
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema, DRAFT202012))
    return {kind: Draft202012Validator(schema, registry=registry) for kind, schema in schemas.items()}


def validator_for(kind: str) -> Draft202012Validator:
    return _validators(schema_dir())[kind]


def schema_problems(doc: YamlDocument, kind: str) -> list[Problem]:
    """Every schema violation of ``doc`` (all of them, not the first), as located problems."""
    problems: list[Problem] = []
    for error in validator_for(kind).iter_errors(doc.data):
        problems.extend(_to_problems(doc, error))
    return problems


def _to_problems(doc: YamlDocument, error: ValidationError) -> list[Problem]:
    path: list[PathPart] = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_fields(doc, path, error)
    return [doc.problem(path, _message(error))]


def _unknown_fields(doc: YamlDocument, path: list[PathPart], error: ValidationError) -> list[Problem]:
    """Point at each unknown key itself, with a guess at the field that was meant."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    allowed = list(schema.get("properties", {}))
    problems = []
    for key in error.instance:
        if key in allowed:
            continue
        hint = _did_you_mean(str(key), allowed)
        problems.append(doc.problem([*path, key], f"unknown field{hint}; allowed: {', '.join(allowed)}"))
    return problems


def _message(error: ValidationError) -> str:
    """The schema's own ``errorMessage`` for this keyword if it has one, else jsonschema's, shortened."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("errorMessage", {})
    if isinstance(custom, dict) and isinstance(custom.get(str(error.validator)), str):
        return str(custom[str(error.validator)])
    if error.validator == "const":
        return f"must be {error.validator_value!r}, not {_short(repr(error.instance))}"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        choices = [str(choice) for choice in error.validator_value]
        hint = _did_you_mean(str(error.instance), choices) if isinstance(error.instance, str) else ""
        return f"{_short(repr(error.instance))} is not one of: {', '.join(choices)}{hint}"
    return _short(error.message)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {choice.lower(): choice for choice in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
