"""Evidence validation with Great Expectations: expectation suites over the evidence tables of a run.

``modelgate.validation.stage.validate_stage`` is the plain stage function (Prefect wraps it in
``tasks/validate.py``); ``validate_evidence`` returns the typed ``ValidationReport``
(``modelgate.validation.report``); ``data_docs_url`` links the run's Data Docs. The package imports
nothing heavy: pandas with the suites, Great Expectations only when a validation runs.
"""
