"""Run the suites with Great Expectations and build the Data Docs site of the run.

GX is imported here, inside the call (its import costs seconds), with its telemetry and progress
bars off. An ephemeral context keeps nothing outside the run's ``data_docs`` folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from modelgate.validation.report import ExpectationOutcome, SuiteResult, ValidationReport, plain
from modelgate.validation.suites import Check, SuitePlan

SITE = "evidence"
DOCS_DIR = "data_docs"
PARTIAL = 10  # unexpected values kept per expectation


def _class_name(expectation_type: str) -> str:
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def _expectation(module: Any, check: Check) -> Any:
    return getattr(module, _class_name(check.type))(**check.kwargs, description=check.description)


def _synthetic(suite: str, problem: str) -> ExpectationOutcome:
    """A failure GX cannot express: the table or a value it needs is not in the evidence."""
    return ExpectationOutcome(
        suite=suite, expectation="expect_evidence_to_be_complete", success=False, observed=problem
    )


def _exception(info: Any) -> str | None:
    """The message of an exception GX caught while computing an expectation (it then fails)."""
    if not isinstance(info, dict):
        return None
    for value in (info, *info.values()):
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception")
    return None


def _observed(result: Any) -> Any:
    """The observed value, else the missing / unexpected values, else an exception message."""
    error = _exception(result.exception_info)
    if error is not None:
        return {"exception": (error.splitlines() or ["exception"])[0]}
    detail = dict(result.result or {})
    if detail.get("observed_value") is not None:
        return plain(detail["observed_value"])
    if detail.get("partial_missing_list"):
        return {"missing": plain(detail["partial_missing_list"][:PARTIAL])}
    if "unexpected_count" in detail:
        count = plain(detail["unexpected_count"])
        if not count:
            return {"unexpected_count": 0}
        return {"unexpected_count": count, "unexpected": plain(detail.get("partial_unexpected_list", [])[:PARTIAL])}
    return None


def _outcome(suite: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = {k: plain(v) for k, v in dict(config.kwargs).items() if k != "batch_id"}
    return ExpectationOutcome(
        suite=suite,
        expectation=str(config.type),
        column=kwargs.get("column"),
        kwargs=kwargs,
        description=config.description or "",
        success=bool(result.success),
        observed=_observed(result),
    )


def _context(docs_dir: Path | None) -> Any:
    """An ephemeral GX context, with a Data Docs site in ``docs_dir`` (emptied first) when given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # In memory, with no docs site but ours (the default ephemeral config adds a temporary one).
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        shutil.rmtree(docs_dir, ignore_errors=True)
        docs_dir.mkdir(parents=True)
        context.add_data_docs_site(
            site_name=SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _run_plan(context: Any, source: Any, plan: SuitePlan) -> list[ExpectationOutcome]:
    """Validate one table; checks GX refuses to build count as failed."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    outcomes = [_synthetic(plan.name, problem) for problem in plan.problems]
    if plan.frame is None or not plan.checks:
        return outcomes
    suite = gx.ExpectationSuite(name=plan.name)
    for check in plan.checks:
        try:
            suite.add_expectation(_expectation(gxe, check))
        except Exception as exc:  # noqa: BLE001 - a check that cannot be built is a failed check
            outcomes.append(_synthetic(plan.name, f"cannot build {check.type}: {exc}".splitlines()[0]))
    suite = context.suites.add(suite)
    batch = source.add_dataframe_asset(plan.name).add_batch_definition_whole_dataframe(plan.name)
    definition = gx.ValidationDefinition(name=plan.name, data=batch, suite=suite)
    validation = context.validation_definitions.add(definition).run(
        batch_parameters={"dataframe": plan.frame}, result_format="SUMMARY"
    )
    return outcomes + [_outcome(plan.name, result) for result in validation.results]


def run_suites(plans: list[SuitePlan], docs_dir: Path | None = None) -> ValidationReport:
    """Validate every planned table; build Data Docs into ``docs_dir`` (replaced) when given."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    context = _context(docs_dir)
    source = context.data_sources.add_pandas("evidence")
    results: list[SuiteResult] = []
    for plan in plans:
        if plan.skip is not None:
            results.append(SuiteResult(name=plan.name, status="skipped", reason=plan.skip))
            continue
        outcomes = _run_plan(context, source, plan)
        results.append(
            SuiteResult(
                name=plan.name,
                status="failed" if any(not o.success for o in outcomes) else "passed",
                source=plan.source,
                rows=None if plan.frame is None else len(plan.frame),
                expectations=outcomes,
            )
        )
    index = None
    if docs_dir is not None:
        context.build_data_docs(site_names=[SITE])
        index = str(docs_dir / "index.html") if (docs_dir / "index.html").is_file() else None
    return ValidationReport(suites=results, data_docs=index)
