"""Every suspect label is reported (Neural Cleanse's labels above the threshold, MM-BD's step-down
test), and the combined verdict's rule: either detector far out, or both agreeing on a label.

Two targets in one model hide each other from a test of the largest statistic alone (the second
target sits in the null); these are the pure statistics, on hand-made norms and margins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.evaluate.backdoor import NeuralCleanseResult, mad_anomaly, suspects
from tasks.evaluate.backdoor_verdict import combine, mmbd_label_p_value
from tasks.evaluate.mmbd import MMBDResult, margin_p_value, max_targets, step_down, suspect_count

CLEAN_MARGINS = [10.2, 11.0, 9.6, 10.8, 10.1, 9.9, 10.5, 11.3, 10.0, 10.4]


def test_neural_cleanse_names_every_label_above_the_threshold_most_anomalous_first() -> None:
    norms = [40.0, 41.0, 39.0, 12.0, 40.5, 38.5, 20.0, 41.5, 39.5, 40.2]
    per_label, index, label = mad_anomaly(norms)
    assert label == 3 and index > 2
    assert suspects(norms, per_label, 2.0) == [3, 6]
    assert suspects(norms, per_label, 1e9) == []


def test_a_label_above_the_median_is_never_a_suspect() -> None:
    norms = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 60.0, 9.9, 10.3, 10.0]
    per_label, _, _ = mad_anomaly(norms)
    assert suspects(norms, per_label, 2.0) == []


def test_step_down_finds_two_targets_the_single_test_misses() -> None:
    margins = [*CLEAN_MARGINS]
    margins[2], margins[7] = 30.0, 31.0  # two targets, close to each other
    single, _ = margin_p_value(margins)
    assert single > 0.05  # the second target inflates the null: the paper's test alone misses both
    steps = step_down(margins)
    assert len(steps) == max_targets(10) == 3
    assert steps[1] < 0.05
    assert suspect_count(steps, 0.05) == 2


def test_one_target_is_one_suspect_and_clean_margins_none() -> None:
    one = [*CLEAN_MARGINS]
    one[4] = 30.0
    assert suspect_count(step_down(one), 0.05) == 1
    assert suspect_count(step_down(CLEAN_MARGINS), 0.05) == 0
    assert step_down(one)[0] == pytest.approx(margin_p_value(one)[0])  # step 1 is the paper's test


@pytest.mark.parametrize("classes", [2, 3, 10, 100, 1000])
def test_the_null_keeps_two_thirds_of_the_labels_and_the_steps_are_few(classes: int) -> None:
    steps = max_targets(classes)
    assert 1 <= steps <= 8 and classes - steps >= (2 * classes) // 3
    margins = list(np.random.default_rng(0).gamma(5.0, 2.0, size=classes))
    p_values = step_down(margins)
    assert len(p_values) == steps and all(0.0 <= p <= 1.0 for p in p_values)


def _nc(label_anomaly: list[float]) -> NeuralCleanseResult:
    empty = torch.zeros(len(label_anomaly), 1, 2, 2)
    norms = [10.0 - a for a in label_anomaly]
    return NeuralCleanseResult(
        norms=norms, norms_per_seed=[norms], reached=[[True] * len(norms)], label_anomaly=label_anomaly,
        anomaly_index=max(label_anomaly), suspect_label=int(np.argmax(label_anomaly)),
        flagged=max(label_anomaly) > 2, masks=empty, patterns=empty, epochs_run=[[1] * len(norms)], passes=1,
        seconds=0.0,
    )  # fmt: skip


def _mm(margins: list[float]) -> MMBDResult:
    steps = step_down(margins)
    return MMBDResult(margins, steps[0], int(np.argmax(margins)), steps[0] < 0.05, 0.0, {}, steps, [])


@pytest.mark.parametrize(
    ("nc_index", "mm_target", "expected", "rule"),
    [
        (5.0, None, [3], "neural-cleanse"),  # Neural Cleanse alone, far out
        (1.0, 40.0, [3], "mm-bd"),  # MM-BD alone, far out
        (3.2, 13.0, [3], "agreement"),  # both moderately, on the same label
        (3.2, None, [], None),  # Neural Cleanse moderately, MM-BD silent: an easy label of a clean model
        (2.2, 13.0, [], None),  # both below the agreement levels
    ],
)
def test_the_verdict_rule(nc_index: float, mm_target: float | None, expected: list[int], rule: str | None) -> None:
    anomaly = [0.3, -0.5, 0.8, nc_index, -1.0, 0.1, 0.6, -0.2, 1.1, 0.0]
    margins = [*CLEAN_MARGINS]
    if mm_target is not None:
        margins[3] = mm_target
    verdict = combine(_nc(anomaly), _mm(margins))
    assert verdict.flagged is bool(expected) and verdict.targets == expected
    if rule:
        assert rule in verdict.rules[3]
        reason = verdict.reason(tuple(str(k) for k in range(10)), _nc(anomaly), _mm(margins))
        assert reason.startswith("backdoor target label 3 ('3': Neural Cleanse index") and rule in reason


def test_a_moderate_margin_on_another_label_is_no_agreement() -> None:
    anomaly = [0.3, -0.5, 0.8, 3.2, -1.0, 0.1, 0.6, -0.2, 1.1, 0.0]
    margins = [*CLEAN_MARGINS]
    margins[6] = 13.0
    assert combine(_nc(anomaly), _mm(margins)).targets == []


def test_two_targets_are_both_reported() -> None:
    anomaly = [0.3, -0.5, 5.5, 0.2, -1.0, 0.1, 4.8, -0.2, 1.1, 0.0]
    margins = [*CLEAN_MARGINS]
    margins[2], margins[6] = 30.0, 31.0
    verdict = combine(_nc(anomaly), _mm(margins))
    assert verdict.targets == [2, 6] and set(verdict.rules[2]) == {"neural-cleanse", "mm-bd", "agreement"}
    assert mmbd_label_p_value(_mm(margins), 2) is not None and mmbd_label_p_value(_mm(margins), 0) is None
