"""What the tests (and the benchmarks) share; pytest collects nothing here and no module defines a test.

* servers: ``servers`` (SeaweedFS, the in-process file server and fake hub), ``registry`` (a registry
  on SeaweedFS and real intake evidence), ``server_records`` (what the Prefect server recorded),
  ``browser`` (headless Chromium), ``marks`` (``@starts_server``: the ``services`` marker), ``ports``;
* samples for the scanner: ``scan_corpus``, ``pickle_attacks``, ``pickle_fuzz``, ``archive_samples``,
  ``code_config_samples``, ``saved_models``, ``unrecognized_samples``, ``inert_samples``,
  ``fail_closed_samples``, and ``live`` (the payload proofs: the real loader in a child process);
* models the evaluation tests train: ``zoo``, ``privacy_zoo``, ``lm_zoo``;
* small pieces: ``paths`` (the checkout, the loaders beside the venv), ``budgets``, ``faults``.

Test modules import from here, never from one another or from conftest (tests/test_layout.py).
"""
