"""Stage progress events, so a CLI or UI can show a run live without knowing Prefect."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from modelgate.pipeline import NAMES

if TYPE_CHECKING:
    from modelgate.evidence import StageEvidence

# The intake stages in the order they run (the flow records them; the CLI shows them): the pipeline's.
STAGES = NAMES

Listener = Callable[[str, str, "StageEvidence | None"], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Register a listener; returns the function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def emit(stage: str, state: str, evidence: StageEvidence | None = None) -> None:
    """Tell every listener that ``stage`` is now ``state`` (running, pass, fail, error, skipped)."""
    for listener in list(_listeners):
        listener(stage, state, evidence)
