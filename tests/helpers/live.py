"""Prove a sample is really malicious: load it with the real loader, in a child process, in a temp dir.

The payloads built by the scanner tests only create a marker file (``touch``) in the
directory they run in. ``runs_payload`` loads a sample the way a consumer would
(``pickle.load``, ``torch.load(weights_only=False)``, ``joblib.load``, ...) in a fresh
interpreter whose working directory is a new temp dir, and reports whether the marker
appeared. A scanner test asserts ``runs_payload(...)`` before asserting the scan blocks
the sample, so a test can never pass on a sample that would not have run.

Never call a loader on a sample in the test process itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MARKER = "modelgate-payload-ran"
# The command a payload runs: harmless, and only inside the child's temp working dir.
PAYLOAD_COMMAND = f"touch {MARKER}"

LOADERS: dict[str, str] = {
    "pickle": "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
    "pickle-loads": "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
    "pickle-python": "import pickle, sys; pickle._Unpickler(open(sys.argv[1], 'rb')).load()",
    "torch": "import torch, sys; torch.load(sys.argv[1], weights_only=False)",
    "joblib": "import joblib, sys; joblib.load(sys.argv[1])",
    "numpy": "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)",
    "keras": "import keras, sys; keras.saving.load_model(sys.argv[1], safe_mode=False)",
}


def runs_payload(path: Path, loader: str = "pickle", *, timeout_s: float = 120.0) -> bool:
    """Whether loading ``path`` with ``loader`` (a key of LOADERS, or Python code reading
    ``sys.argv[1]``) creates the marker file in a fresh temp working dir.

    Load errors after the payload ran still count: a pickle's calls run before it fails.
    """
    code = LOADERS.get(loader, loader)
    with tempfile.TemporaryDirectory(prefix="modelgate-live-") as workdir:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MODELGATE_"))}
        subprocess.run(
            [sys.executable, "-c", code, str(Path(path).resolve())],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
        return (Path(workdir) / MARKER).exists()


def loads_cleanly(path: Path, loader: str = "pickle", *, timeout_s: float = 120.0) -> bool:
    """Whether ``loader`` loads ``path`` without an error (for benign neighbours)."""
    code = LOADERS.get(loader, loader)
    with tempfile.TemporaryDirectory(prefix="modelgate-live-") as workdir:
        done = subprocess.run(
            [sys.executable, "-c", code, str(Path(path).resolve())],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        return done.returncode == 0


def missing_loader(why: str) -> None:
    """Without the loader the payload proof cannot run: a skip for a developer, a failure in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (make install puts it in .venv-loaders/)")
    pytest.skip(why)
