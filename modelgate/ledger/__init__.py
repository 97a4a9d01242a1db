"""The evidence ledger: every intake run recorded as a DVC experiment, pushed to a git remote and to
the DVC remote on S3, and the auditor's commands over it.

``modelgate.ledger.version.version_stage`` is the plain stage function (Prefect wraps it in
``tasks/version.py``); ``modelgate.ledger.audit`` lists, diffs, restores and reproduces recorded
runs; ``flows/dvc_stages.py`` holds the stages of ``dvc.yaml`` (the intake side composes them). See docs/audit.md.
"""
