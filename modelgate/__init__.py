"""modelgate: governed intake of open-source models.

The core package is importable without Prefect, DVC, Great Expectations or torch:
it holds the evidence models, hashing and signature verification, the policy
engine, the registry client and the CLI. The intake pipeline (``flows/``,
``tasks/``) builds on it and needs the ``intake`` extra.
"""

__version__ = "0.1.0"
