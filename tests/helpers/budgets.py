"""Evaluation budgets small enough for a test: a params.yaml overlay (MODELGATE_PARAMS_FILE) for a real run."""

from __future__ import annotations

from typing import Any

SMALL_BUDGET: dict[str, Any] = {
    "evaluate": {
        "neural_cleanse": {"samples_per_class": 10, "epochs": 50},
        "pgd": {"epsilons": {"linf": [0.03], "l2": [0.5]}, "steps": 5, "restarts": 1, "samples": 100},
        "membership": {"reference_models": 4, "shadow": {"epochs": 2}, "bootstrap": 100},
        "inversion": {"steps": 20},
    }
}
