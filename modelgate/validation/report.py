"""Typed results of evidence validation: what each expectation checked, saw, and decided.

The gate reads only the flat metrics derived from these; auditors and the Data Docs read the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

OBSERVED_CHARS = 160  # an expectation's observed value as it appears in a one-line label


class ExpectationOutcome(BaseModel):
    """One expectation of one suite: its arguments, whether it held, and the value it observed."""

    suite: str
    expectation: str = Field(description="Great Expectations type, e.g. expect_column_values_to_not_be_null.")
    column: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict, description="The expectation's arguments.")
    description: str = ""
    success: bool
    observed: Any = Field(default=None, description="Observed value, or the unexpected / missing values.")

    def label(self) -> str:
        """``suite: expectation(column) saw <observed>``: one line for the decision record."""
        target = f"({self.column})" if self.column else ""
        seen = "" if self.observed is None else f" saw {_short(self.observed)}"
        return f"{self.suite}: {self.expectation}{target}{seen}"


class SuiteResult(BaseModel):
    """One expectation suite over one evidence table; ``skipped`` always carries its reason."""

    name: str
    status: Literal["passed", "failed", "skipped"]
    reason: str | None = None
    source: str | None = Field(default=None, description="Where the table was read from.")
    rows: int | None = None
    expectations: list[ExpectationOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]


class ValidationReport(BaseModel):
    """Every suite of one run; the run is valid only if no evaluated expectation failed."""

    suites: list[SuiteResult]
    data_docs: str | None = Field(default=None, description="Path of the Data Docs index.html.")

    @property
    def success(self) -> bool:
        return not self.failed

    @property
    def evaluated(self) -> list[ExpectationOutcome]:
        return [e for suite in self.suites for e in suite.expectations]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [e for e in self.evaluated if not e.success]

    @property
    def skipped(self) -> list[SuiteResult]:
        return [s for s in self.suites if s.status == "skipped"]


def plain(value: Any) -> Any:
    """A JSON-safe copy of a value GX reports (numpy scalars, NaN and infinities spelled out)."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (list, dict, str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            value = str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [plain(v) for v in sorted(value, key=repr)]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= OBSERVED_CHARS else text[: OBSERVED_CHARS - 3] + "..."
