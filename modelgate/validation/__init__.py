"""Evidence validation with Great Expectations: expectation suites over the evidence tables of a run.

``validate_stage`` is the plain stage function (Prefect wraps it in ``tasks/validate.py``);
``validate_evidence`` returns the typed ``ValidationReport``; ``data_docs_url`` links the run's
Data Docs. Great Expectations is imported only when a validation runs.
"""

from modelgate.validation.report import ExpectationOutcome, SuiteResult, ValidationReport
from modelgate.validation.stage import (
    STAGE,
    data_docs_path,
    data_docs_url,
    load_validation_params,
    validate_evidence,
    validate_stage,
)
from modelgate.validation.suites import ValidationParams

__all__ = [
    "STAGE",
    "ExpectationOutcome",
    "SuiteResult",
    "ValidationParams",
    "ValidationReport",
    "data_docs_path",
    "data_docs_url",
    "load_validation_params",
    "validate_evidence",
    "validate_stage",
]
