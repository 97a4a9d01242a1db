"""Validation stage: Great Expectations suites over the run's evidence tables, before the gate.

The plain function is ``modelgate.validation.validate_stage``; this thin task runs it on the run's
evidence folder. GX is imported inside the call, never at flow import.
"""

from __future__ import annotations

from prefect import task

from modelgate.validation.stage import data_docs_url, validate_stage

validate_task = task(name="validate", task_run_name="validate")(validate_stage)

__all__ = ["data_docs_url", "validate_stage", "validate_task"]
