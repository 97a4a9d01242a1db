"""Where things are: the checkout, and the real loaders beside the venv."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The real loaders, each at the version that runs the payload, live beside the venv (Makefile: make
# install puts them in .venv-loaders/); a folder named by an environment variable wins.
LOADERS_DIR = REPO / ".venv-loaders"
