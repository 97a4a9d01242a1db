"""Load and validate policy, waiver and policy-test documents.

Validation reports every problem at once, each as ``file:line: field: message``,
so an author fixes a file in one pass. The loaders raise ``PolicyError`` with all
of them; ``validate_file`` returns them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from modelgate.errors import PolicyError
from modelgate.policy.model import (
    POLICY_KIND,
    TEST_KIND,
    WAIVER_KIND,
    PolicyDocument,
    PolicyTestDocument,
    WaiverDocument,
)
from modelgate.policy.schemas import schema_problems
from modelgate.policy.yamlio import PathPart, Problem, YamlDocument, load_yaml
from modelgate.settings import load_settings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
KINDS = (POLICY_KIND, WAIVER_KIND, TEST_KIND)
YAML_SUFFIXES = (".yaml", ".yml")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it came from; the digest pins the exact bytes in decisions."""

    name: str
    path: Path
    digest: str
    document: PolicyDocument


@dataclass(frozen=True)
class LoadedWaiver:
    """A valid waiver and where it came from."""

    name: str
    path: Path
    digest: str
    document: WaiverDocument

    @property
    def policy(self) -> str:
        return self.document.spec.policy

    @property
    def rules(self) -> list[str]:
        return self.document.spec.rules

    @property
    def model_digest(self) -> str:
        return self.document.spec.model_digest

    @property
    def expires(self) -> datetime:
        return self.document.spec.expires


def policy_error(problems: list[Problem]) -> PolicyError:
    """One error listing every problem, one per line."""
    return PolicyError("\n".join(str(p) for p in sorted_problems(problems)))


def raise_if(problems: list[Problem]) -> None:
    if problems:
        raise policy_error(problems)


def sorted_problems(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line or 0, p.column or 0, p.field, p.message))


def is_policy_name(name_or_path: str) -> bool:
    """A bare name (``default``) is looked up in the policy folder; anything else is a path."""
    return bool(NAME_RE.match(name_or_path)) and not name_or_path.endswith(YAML_SUFFIXES)


def policy_path(name_or_path: str, policy_dir: Path) -> Path:
    return policy_dir / f"{name_or_path}.yaml" if is_policy_name(name_or_path) else Path(name_or_path)


def parse_timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp with a timezone, or None: a naive time is ambiguous for an expiry."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- loaders -------------------------------------------------------------------------------


def load_policy(name_or_path: str, policy_dir: Path) -> LoadedPolicy:
    """Load a policy by name (``policy_dir/<name>.yaml``) or path; raise ``PolicyError`` if invalid."""
    path = policy_path(name_or_path, policy_dir)
    by_name = is_policy_name(name_or_path)
    if by_name and not path.is_file():
        raise PolicyError(f"policy {name_or_path!r} not found: {path} does not exist")
    doc, problems = load_yaml(path)
    if doc is None:
        raise policy_error(problems)
    policy, found = _check_policy(doc)
    problems += found
    if policy is not None and by_name and policy.metadata.name != name_or_path:
        problems.append(doc.problem(["metadata", "name"], f"must be {name_or_path!r}, the name of the file"))
    if policy is None or problems:
        raise policy_error(problems)
    return LoadedPolicy(policy.metadata.name, path, doc.digest, policy)


def load_waivers(waiver_dir: Path, *, policy_dir: Path | None = None) -> list[LoadedWaiver]:
    """Every ``*.yaml`` directly in ``waiver_dir`` (a missing folder has none).

    Rule ids are checked against the named policy in ``policy_dir`` (default: the
    folder above ``waiver_dir``, i.e. ``policies/`` for ``policies/waivers/``).
    """
    if not waiver_dir.is_dir():
        return []
    lookup = PolicyLookup(policy_dir or waiver_dir.parent)
    waivers: list[LoadedWaiver] = []
    problems: list[Problem] = []
    files = sorted(p for p in waiver_dir.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)
    for path in files:
        loaded, found = _load_waiver_file(path, lookup)
        problems += found
        waivers += [loaded] if loaded else []
    problems += _duplicate_waiver_names(waivers)
    raise_if(problems)
    return waivers


def load_policy_test(path: Path, policy_dir: Path) -> tuple[PolicyTestDocument, LoadedPolicy]:
    """A valid policy-test document and the policy it tests; raise ``PolicyError`` if either is invalid."""
    doc, problems = load_yaml(path)
    if doc is None:
        raise policy_error(problems)
    test, found = _check_test(doc, PolicyLookup(policy_dir))
    problems += found
    if test is None or problems:
        raise policy_error(problems)
    return test, load_policy(test_policy_ref(test.spec.policy, path), policy_dir)


def test_policy_ref(reference: str, test_file: Path) -> str:
    """A test names its policy by name, or by a path relative to the test file."""
    if is_policy_name(reference) or Path(reference).is_absolute():
        return reference
    return str(test_file.parent / reference)


def _load_waiver_file(path: Path, lookup: PolicyLookup) -> tuple[LoadedWaiver | None, list[Problem]]:
    doc, problems = load_yaml(path)
    if doc is None:
        return None, problems
    waiver, found = _check_waiver(doc, lookup)
    problems += found
    if waiver is None or problems:
        return None, problems
    return LoadedWaiver(waiver.metadata.name, path, doc.digest, waiver), problems


def _duplicate_waiver_names(waivers: list[LoadedWaiver]) -> list[Problem]:
    seen: dict[str, Path] = {}
    problems = []
    for waiver in waivers:
        if waiver.name in seen:
            message = f"duplicate waiver name {waiver.name!r} (also in {seen[waiver.name]})"
            problems.append(Problem(str(waiver.path), 1, None, "metadata.name", message))
        seen.setdefault(waiver.name, waiver.path)
    return problems


# --- validation ----------------------------------------------------------------------------


def validate_file(path: Path, *, policy_dir: Path | None = None) -> list[Problem]:
    """Every problem in one policy, waiver or policy-test file (empty if valid), chosen by ``kind``.

    Waivers and tests are checked against the policies they name in ``policy_dir``
    (default: the configured policy folder).
    """
    doc, problems = load_yaml(path)
    if doc is None:
        return sorted_problems(problems)
    lookup = PolicyLookup(policy_dir or load_settings().policy_dir)
    kind = document_kind(doc)
    checks: dict[str, Callable[[], list[Problem]]] = {
        POLICY_KIND: lambda: _check_policy(doc)[1],
        WAIVER_KIND: lambda: _check_waiver(doc, lookup)[1],
        TEST_KIND: lambda: _check_test(doc, lookup)[1],
    }
    if kind in checks:
        problems += checks[kind]()
    else:
        problems.append(_kind_problem(doc, kind))
    return sorted_problems(problems)


def document_kind(doc: YamlDocument) -> str | None:
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    return kind if isinstance(kind, str) else None


def _kind_problem(doc: YamlDocument, kind: str | None) -> Problem:
    expected = ", ".join(KINDS)
    if not isinstance(doc.data, dict):
        return doc.problem([], f"expected a mapping with apiVersion, kind, metadata and spec (kind one of {expected})")
    if kind is None:
        return doc.problem(["kind"], f"missing or not a string; expected one of {expected}")
    return doc.problem(["kind"], f"unknown kind {kind!r}; expected one of {expected}")


def _expect_kind(doc: YamlDocument, expected: str) -> list[Problem]:
    kind = document_kind(doc)
    if kind == expected:
        return []
    if kind in KINDS:
        return [doc.problem(["kind"], f"expected kind {expected}, found {kind}")]
    return [_kind_problem(doc, kind)]


def _check_policy(doc: YamlDocument) -> tuple[PolicyDocument | None, list[Problem]]:
    problems = _expect_kind(doc, POLICY_KIND)
    if problems:
        return None, problems
    problems = schema_problems(doc, POLICY_KIND) + _duplicate_rule_ids(doc)
    return _build(doc, PolicyDocument, problems)


def _check_waiver(doc: YamlDocument, lookup: PolicyLookup) -> tuple[WaiverDocument | None, list[Problem]]:
    problems = _expect_kind(doc, WAIVER_KIND)
    if problems:
        return None, problems
    problems = schema_problems(doc, WAIVER_KIND) + _waiver_semantics(doc, doc.data, [], lookup)
    return _build(doc, WaiverDocument, problems)


def _check_test(doc: YamlDocument, lookup: PolicyLookup) -> tuple[PolicyTestDocument | None, list[Problem]]:
    problems = _expect_kind(doc, TEST_KIND)
    if problems:
        return None, problems
    problems = schema_problems(doc, TEST_KIND) + _test_semantics(doc, lookup)
    return _build(doc, PolicyTestDocument, problems)


def _build(doc: YamlDocument, model: type[M], problems: list[Problem]) -> tuple[M | None, list[Problem]]:
    """The typed document once the schema and semantic checks pass (pydantic errors located too)."""
    if problems:
        return None, problems
    try:
        return model.model_validate(doc.data), []
    except PydanticValidationError as exc:
        located = [doc.problem(_loc(err["loc"]), err["msg"]) for err in exc.errors()]
        return None, located


def _loc(loc: tuple[Any, ...]) -> list[PathPart]:
    """A pydantic location without its union-member labels."""
    return [part for part in loc if isinstance(part, int) or part not in {"Comparison", "Group"}]


# --- semantic checks (what a schema cannot say) ----------------------------------------------


def _dig(data: Any, *path: PathPart) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _list_at(data: Any, *path: PathPart) -> list[Any]:
    value = _dig(data, *path)
    return value if isinstance(value, list) else []


def _duplicate_rule_ids(doc: YamlDocument) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for index, rule in enumerate(_list_at(doc.data, "spec", "rules")):
        rule_id = _dig(rule, "id")
        if not isinstance(rule_id, str):
            continue
        path: list[PathPart] = ["spec", "rules", index, "id"]
        if rule_id in first:
            problems.append(doc.problem(path, f"duplicate rule id {rule_id!r} (first at line {first[rule_id]})"))
        first.setdefault(rule_id, doc.line_of(path))
    return problems


def _waiver_semantics(doc: YamlDocument, waiver: Any, at: list[PathPart], lookup: PolicyLookup) -> list[Problem]:
    """Expiry must be a real timestamp; listed rules must exist in the named policy (if it can be found)."""
    problems = []
    expires = _dig(waiver, "spec", "expires")
    if isinstance(expires, str) and parse_timestamp(expires) is None:
        message = f"{expires!r} is not an RFC 3339 timestamp with a timezone (e.g. 2026-12-31T00:00:00Z)"
        problems.append(doc.problem([*at, "spec", "expires"], message))
    policy_name = _dig(waiver, "spec", "policy")
    rule_ids = lookup.rule_ids(policy_name) if isinstance(policy_name, str) else None
    if rule_ids is None:
        return problems
    for index, rule_id in enumerate(_list_at(waiver, "spec", "rules")):
        if isinstance(rule_id, str) and rule_id not in rule_ids:
            message = f"policy {policy_name!r} has no rule {rule_id!r}; rules: {', '.join(rule_ids)}"
            problems.append(doc.problem([*at, "spec", "rules", index], message))
    return problems


def _test_semantics(doc: YamlDocument, lookup: PolicyLookup) -> list[Problem]:
    reference = _dig(doc.data, "spec", "policy")
    rule_ids: list[str] | None = None
    problems: list[Problem] = []
    if isinstance(reference, str):
        rule_ids, found = lookup.test_policy(reference, doc.path)
        problems += [doc.problem(["spec", "policy"], message) for message in found]
    names: dict[str, int] = {}
    for index, case in enumerate(_list_at(doc.data, "spec", "cases")):
        problems += _case_semantics(doc, case, ["spec", "cases", index], rule_ids, lookup, names)
    return problems


def _case_semantics(
    doc: YamlDocument,
    case: Any,
    at: list[PathPart],
    rule_ids: list[str] | None,
    lookup: PolicyLookup,
    names: dict[str, int],
) -> list[Problem]:
    problems = []
    name = _dig(case, "name")
    if isinstance(name, str):
        if name in names:
            problems.append(doc.problem([*at, "name"], f"duplicate case name (first at line {names[name]})"))
        names.setdefault(name, doc.line_of([*at, "name"]))
    now = _dig(case, "now")
    if isinstance(now, str) and parse_timestamp(now) is None:
        problems.append(doc.problem([*at, "now"], f"{now!r} is not an RFC 3339 timestamp with a timezone"))
    for index, waiver in enumerate(_list_at(case, "waivers")):
        problems += _waiver_semantics(doc, waiver, [*at, "waivers", index], lookup)
    for field in ("failedRules", "waivedRules"):
        for index, rule_id in enumerate(_list_at(case, "expect", field)):
            if rule_ids is not None and isinstance(rule_id, str) and rule_id not in rule_ids:
                problems.append(doc.problem([*at, "expect", field, index], f"the policy has no rule {rule_id!r}"))
    return problems


class PolicyLookup:
    """Finds the policies that waivers and tests name, loading each once."""

    def __init__(self, policy_dir: Path) -> None:
        self.policy_dir = policy_dir
        self._cache: dict[str, LoadedPolicy | PolicyError] = {}

    def load(self, name_or_path: str) -> LoadedPolicy | PolicyError:
        if name_or_path not in self._cache:
            try:
                self._cache[name_or_path] = load_policy(name_or_path, self.policy_dir)
            except PolicyError as exc:
                self._cache[name_or_path] = exc
        return self._cache[name_or_path]

    def rule_ids(self, name: str) -> list[str] | None:
        """The rule ids of a named policy, or None when it cannot be found or loaded."""
        loaded = self.load(name) if is_policy_name(name) else None
        return loaded.document.rule_ids() if isinstance(loaded, LoadedPolicy) else None

    def test_policy(self, reference: str, test_file: Path) -> tuple[list[str] | None, list[str]]:
        """A test's policy must load: its rule ids, or the messages saying why it does not."""
        loaded = self.load(test_policy_ref(reference, test_file))
        if isinstance(loaded, PolicyError):
            return None, [f"cannot load policy {reference!r}: {line}" for line in str(loaded).splitlines()]
        return loaded.document.rule_ids(), []
