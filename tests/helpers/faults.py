"""Faults injected into a running flow: a worker that dies once, then comes back."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest


def crash_once(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, why: str) -> list[int]:
    """Make ``module.name`` raise the first time it is called and behave after; the list counts the crashes."""
    crashes: list[int] = []
    original = getattr(module, name)

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not crashes:
            crashes.append(1)
            raise RuntimeError(why)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return crashes
