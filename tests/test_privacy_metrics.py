"""ROC, AUC, TPR at low FPR and their bootstrap intervals, against scikit-learn and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from tasks.evaluate.privacy.metrics import attack_figures, fpr_key, paired_difference, roc_curve, tpr_at_fpr


def _separated(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    members = rng.random(n) < 0.5
    return rng.normal(size=n) + shift * members, members


@pytest.mark.parametrize("decimals", [0, 1, 6])
def test_auc_and_tpr_agree_with_scikit_learn(decimals: int) -> None:
    scores, members = _separated(600, 1.0, seed=decimals)
    scores = np.round(scores, decimals)  # ties at 0 decimals
    roc = roc_curve(scores, members)
    assert roc.auc == pytest.approx(roc_auc_score(members, scores), abs=1e-12)
    fpr, tpr, _ = sk_roc_curve(members, scores)
    for level in (0.01, 0.05, 0.3):
        assert tpr_at_fpr(roc, level) == pytest.approx(tpr[fpr <= level].max())


def test_perfect_and_useless_attacks() -> None:
    members = np.array([True] * 50 + [False] * 50)
    perfect = attack_figures(members.astype(float), members, bootstrap=200)
    assert perfect.auc.value == 1.0 and perfect.tpr[0.01].value == 1.0
    flipped = attack_figures(-members.astype(float), members, bootstrap=200)
    assert flipped.auc.value == 0.0 and flipped.tpr[0.01].value == 0.0


def test_bootstrap_interval_covers_the_point_and_narrows_with_more_records() -> None:
    small = attack_figures(*_separated(300, 1.0, seed=1), bootstrap=400)
    large = attack_figures(*_separated(6000, 1.0, seed=1), bootstrap=400)
    for figures in (small, large):
        assert figures.auc.low <= figures.auc.value <= figures.auc.high
        assert figures.tpr[0.01].low <= figures.tpr[0.01].value <= figures.tpr[0.01].high
    assert large.auc.high - large.auc.low < small.auc.high - small.auc.low
    # The population AUC of N(1,1) vs N(0,1) is Phi(1/sqrt(2)) = 0.760.
    assert large.auc.low < 0.760 < large.auc.high


def test_metric_keys() -> None:
    keys = attack_figures(*_separated(200, 1.0, seed=2), bootstrap=50).metrics("membership.lira_")
    assert {
        "membership.lira_auc",
        "membership.lira_tpr_at_1pct_fpr_ci_low",
        "membership.lira_tpr_at_0_1pct_fpr",
    } <= set(keys)
    assert fpr_key(0.01) == "1pct" and fpr_key(0.001) == "0_1pct"


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    scores, members = _separated(500, 1.0, seed=3)
    same = paired_difference(scores, scores.copy(), members, bootstrap=300)
    assert (same.auc.value, same.auc.low, same.auc.high) == (0.0, 0.0, 0.0)
    assert same.tpr[0.01].low == same.tpr[0.01].high == 0.0


def test_paired_difference_sees_an_amplified_model() -> None:
    scores, members = _separated(2000, 0.5, seed=4)
    leaky = scores + 2.0 * members
    difference = paired_difference(leaky, scores, members, bootstrap=300)
    assert difference.tpr[0.01].low > 0.1
    assert difference.auc.low > 0.1


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="both members and non-members"):
        attack_figures(np.zeros(4), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        attack_figures(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="3 scores for 2"):
        roc_curve(np.zeros(3), np.array([True, False]))
