"""The provenance stage: where a model comes from and what its model card claims.

Provenance records facts (source, revision pin, card license, base model, data sets) for the
policy gate to judge; it never fails a model itself. A model card is untrusted input, so it is
read with a size bound, parsed with ``yaml.safe_load`` only, and reduced to bounded JSON values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from modelgate.evidence import MetricValue, StageEvidence, Status, run_stage

STAGE = "provenance"
CARD_NAME = "readme.md"
FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")

MAX_DEPTH = 8  # nesting kept from the front matter
MAX_NODES = 2_000  # values kept from the front matter (also defuses YAML alias bombs)
MAX_STRING = 4_096  # characters kept per string in details
MAX_METRIC_STRING = 256  # characters kept per string in metrics (what policies compare)
MAX_LIST_METRIC = 100  # items kept in list metrics
MAX_INT = 2**63  # larger integers become a note (huge ints cannot even be printed in decimal)


@dataclass
class ModelCard:
    """A model card's front matter, or why it could not be read.

    ``present`` means a card file with a front matter block was found, even if the block
    is not valid YAML (then ``error`` says why and ``metadata`` is empty).
    """

    metadata: dict[str, Any]
    present: bool
    error: str | None
    file_name: str | None = None
    truncated: bool = False
    clipped: bool = False
    sha256: str | None = None

    @property
    def valid(self) -> bool:
        return self.present and self.error is None


@dataclass
class _Budget:
    """How many more values the JSON reduction may keep."""

    nodes: int = MAX_NODES
    clipped: bool = False


def _find_card(model_dir: Path) -> Path | None:
    """The top-level README.md (any case); the exact name wins when several exist.

    A single-file model has no card.
    """
    if model_dir.is_file():
        return None
    candidates = sorted(p for p in model_dir.iterdir() if p.name.lower() == CARD_NAME)
    exact = [p for p in candidates if p.name == "README.md"]
    found = exact or candidates
    return found[0] if found else None


def _front_matter(text: str) -> str | None:
    """The text between a leading '---' line and the next '---' line; None when there is none.

    Raises ValueError when the block is opened but never closed.
    """
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:index])
    raise ValueError("opening '---' has no closing '---'")


def _yaml_error_line(exc: Exception) -> str:
    """One line for a YAML error: the problem and where, without the multi-line excerpt."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 2}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem}{where}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


def to_json_safe(value: Any, budget: _Budget | None = None, depth: int = 0) -> Any:
    """Reduce parsed YAML to bounded JSON values: str/int/float/bool/None, lists and str-keyed dicts.

    Dates become ISO strings; anything else becomes its type name. Depth, size and string
    length are bounded so hostile cards (deep nesting, alias bombs) stay small.
    """
    budget = budget if budget is not None else _Budget()
    budget.nodes -= 1
    if budget.nodes < 0 or depth > MAX_DEPTH:
        budget.clipped = True
        return None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < MAX_INT else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        budget.clipped |= len(value) > MAX_STRING
        return value[:MAX_STRING]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_json_safe(item, budget, depth + 1) for item in value if budget.nodes > 0]
    if isinstance(value, dict):
        return {
            str(key)[:MAX_STRING]: to_json_safe(item, budget, depth + 1)
            for key, item in value.items()
            if budget.nodes > 0
        }
    return type(value).__name__


def _parse(name: str, text: str, budget: _Budget) -> tuple[bool, dict[str, Any], str | None]:
    """(front matter present, metadata, error) for a card's text."""
    try:
        block = _front_matter(text)
    except ValueError as exc:
        return True, {}, f"{name} front matter: {exc}"
    if block is None:
        return False, {}, None
    try:
        loaded = yaml.safe_load(block)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # ValueError: e.g. a 5,000-digit integer
        return True, {}, f"{name} front matter: {_yaml_error_line(exc)}"
    if loaded is None:
        return True, {}, None
    if not isinstance(loaded, dict):
        return True, {}, f"{name} front matter: expected a mapping, got {type(loaded).__name__}"
    return True, to_json_safe(loaded, budget), None


def read_model_card(model_dir: Path, max_bytes: int = 1_000_000) -> ModelCard:
    """Read a model folder's README.md front matter, bounded and with ``yaml.safe_load`` only.

    A missing card is not an error (absence is a fact for the policy). A symbolic link is not
    followed. Only the first ``max_bytes`` bytes are read; the front matter must end inside them.
    """
    path = _find_card(model_dir)
    if path is None:
        return ModelCard(metadata={}, present=False, error=None)
    if path.is_symlink() or not path.is_file():
        return ModelCard(metadata={}, present=False, error=f"{path.name}: not a regular file", file_name=path.name)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    truncated = len(data) > max_bytes
    data = data[:max_bytes]
    text = data.decode("utf-8", errors="replace")
    budget = _Budget()
    present, metadata, error = _parse(path.name, text, budget)
    if error and truncated and "no closing" in error:
        error = f"{path.name} front matter: not closed within the first {max_bytes} bytes"
    return ModelCard(
        metadata=metadata,
        present=present,
        error=error,
        file_name=path.name,
        truncated=truncated,
        clipped=budget.clipped,
        sha256="sha256:" + hashlib.sha256(data).hexdigest(),
    )


def _clip(value: str) -> str:
    return value.strip()[:MAX_METRIC_STRING]


def _first_string(value: Any) -> str | None:
    """A string, or the first string of a list; None for anything else."""
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str) and item.strip()), None)
    return _clip(value) if isinstance(value, str) and value.strip() else None


def _string_list(value: Any) -> list[str]:
    """A list of non-empty strings from a string or a list (other items dropped)."""
    items = value if isinstance(value, list) else [value]
    return [_clip(item) for item in items if isinstance(item, str) and item.strip()][:MAX_LIST_METRIC]


def card_metrics(metadata: dict[str, Any]) -> dict[str, MetricValue]:
    """The card facts policies read: license (lowercased), base model, data sets, library."""
    license_ = _first_string(metadata.get("license"))
    datasets: list[str | int | float | bool] = list(_string_list(metadata.get("datasets")))
    return {
        "provenance.license": license_.lower() if license_ else None,
        "provenance.base_model": _first_string(metadata.get("base_model")),
        "provenance.datasets": datasets,
        "provenance.library_name": _first_string(metadata.get("library_name")),
    }


def revision_pinned(scheme: str, revision_requested: str | None, expected_digest: str | None) -> bool:
    """hf: the request named a full commit sha (a branch or tag can move); others: a digest pin."""
    if scheme.lower() == "hf":
        return bool(revision_requested and FULL_SHA.fullmatch(revision_requested.strip()))
    return bool(expected_digest)


def _card_details(card: ModelCard) -> dict[str, Any]:
    """What a reviewer needs about the card: the whole front matter, lists in full, any error."""
    details: dict[str, Any] = {
        "model_card_file": card.file_name,
        "model_card_error": card.error,
        "model_card_truncated": card.truncated,
        "front_matter_clipped": card.clipped,
        "front_matter": card.metadata,
    }
    for key, name in (("license", "licenses"), ("base_model", "base_models")):
        if isinstance(card.metadata.get(key), list):
            details[name] = _string_list(card.metadata[key])
    return details


def _provenance(
    scheme: str,
    source_host: str,
    revision: str | None,
    revision_requested: str | None,
    expected_digest: str | None,
    model_dir: Path,
) -> StageEvidence:
    card = read_model_card(model_dir)
    metrics: dict[str, MetricValue] = {
        "provenance.source_scheme": scheme.lower(),
        "provenance.source_host": source_host,
        "provenance.revision": revision,
        "provenance.revision_pinned": revision_pinned(scheme, revision_requested, expected_digest),
        "provenance.has_model_card": card.valid,
        **card_metrics(card.metadata),
    }
    details = {"revision_requested": revision_requested, "expected_digest": expected_digest, **_card_details(card)}
    inputs = {"model_card": card.sha256} if card.sha256 else {}
    return StageEvidence(
        stage=STAGE,
        status=Status.PASS,
        metrics=metrics,
        details=details,
        inputs=inputs,
        tools={"pyyaml": yaml.__version__},
    )


def provenance_stage(
    *,
    scheme: str,
    source_host: str,
    revision: str | None,
    revision_requested: str | None,
    expected_digest: str | None,
    model_dir: Path,
) -> StageEvidence:
    """Record where the model comes from and what its card claims; status is pass unless it crashes."""
    return run_stage(
        STAGE,
        lambda: _provenance(scheme, source_host, revision, revision_requested, expected_digest, model_dir),
    )
