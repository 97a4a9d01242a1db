"""Membership-inference figures the way Carlini et al. 2022 ask for them: ROC, AUC, TPR at low FPR.

Accuracy of an attack hides what matters (a few training records identified with certainty), so
every attack here reports the full ROC, its AUC and the true-positive rate at 1% and 0.1% false
positives, each with a bootstrap confidence interval. Scores are "higher = more likely a member".
The paired bootstrap resamples the same records for two models so the difference of their figures
(the privacy-backdoor amplification) gets an interval of its own. Everything is vectorized numpy
(one sort per replicate row): a thousand replicates of 2,000 canaries take about half a second on
two cores, of 10,000 scores about three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FPR_LEVELS: tuple[float, ...] = (0.01, 0.001)
DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95


def fpr_key(fpr: float) -> str:
    """``0.01`` -> ``1pct``, ``0.001`` -> ``0_1pct``: metric-key friendly (no dots, no ``%``)."""
    pct = f"{fpr * 100:g}"
    return pct.replace(".", "_") + "pct"


@dataclass(frozen=True)
class Roc:
    """An ROC curve (FPR ascending) with its AUC."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float

    def rows(self, points: int = 101) -> list[dict[str, float]]:
        """The curve thinned to at most ``points`` rows (log-spaced FPR, so the low-FPR end stays visible)."""
        if len(self.fpr) <= points:
            index = np.arange(len(self.fpr))
        else:
            grid = np.concatenate([[0.0], np.logspace(-5, 0, points - 1)])
            index = np.unique(np.clip(np.searchsorted(self.fpr, grid, side="right") - 1, 0, len(self.fpr) - 1))
        return [{"fpr": round(float(self.fpr[i]), 6), "tpr": round(float(self.tpr[i]), 6)} for i in index]


def _check(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    members = np.asarray(members, dtype=bool).ravel()
    if scores.shape != members.shape:
        raise ValueError(f"{len(scores)} scores for {len(members)} membership labels")
    if not np.isfinite(scores).all():
        raise ValueError("membership scores contain NaN or infinity")
    if members.all() or not members.any():
        raise ValueError("membership figures need both members and non-members")
    return scores, members


def roc_curve(scores: np.ndarray, members: np.ndarray) -> Roc:
    """The exact ROC of ``scores`` (ties handled as one threshold) and its trapezoidal AUC."""
    scores, members = _check(scores, members)
    order = np.argsort(-scores, kind="mergesort")
    s, m = scores[order], members[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(m)[distinct]
    fp = np.cumsum(~m)[distinct]
    tpr = np.r_[0.0, tp / m.sum()]
    fpr = np.r_[0.0, fp / (~m).sum()]
    thresholds = np.r_[np.inf, s[distinct]]
    return Roc(fpr, tpr, thresholds, float(np.trapezoid(tpr, fpr)))


def tpr_at_fpr(roc: Roc, fpr: float) -> float:
    """The largest TPR reachable with a false-positive rate of at most ``fpr`` (Carlini et al.'s reading)."""
    reachable = roc.fpr <= fpr + 1e-12
    return float(roc.tpr[reachable].max())


def _auc_batch(scores: np.ndarray, members: np.ndarray) -> np.ndarray:
    """AUC of each row (Mann-Whitney U with mid-ranks), rows are bootstrap replicates."""
    ranks = _midranks(scores)
    positives = members.sum(axis=1)
    negatives = members.shape[1] - positives
    u = (ranks * members).sum(axis=1) - positives * (positives + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return u / (positives * negatives)


def _midranks(scores: np.ndarray) -> np.ndarray:
    """Row-wise ranks (1-based) with ties given their average rank."""
    order = np.argsort(scores, axis=1, kind="mergesort")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    n = scores.shape[1]
    ordinal = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), scores.shape)
    # Average the ordinal ranks over each run of equal scores.
    starts = np.ones_like(sorted_scores, dtype=bool)
    starts[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group = np.cumsum(starts, axis=1) - 1
    offset = (np.arange(scores.shape[0]) * n)[:, None]
    flat_group = (group + offset).ravel()
    sums = np.bincount(flat_group, weights=ordinal.ravel(), minlength=scores.size)
    counts = np.bincount(flat_group, minlength=scores.size)
    mean_rank = (sums / np.maximum(counts, 1))[flat_group].reshape(scores.shape)
    ranks = np.empty_like(mean_rank)
    np.put_along_axis(ranks, order, mean_rank, axis=1)
    return ranks


def _tpr_at_fpr_batch(scores: np.ndarray, members: np.ndarray, fpr: float) -> np.ndarray:
    """Row-wise TPR at FPR <= ``fpr``: the threshold is the k-th largest non-member score (k = floor(fpr * N-))."""
    negatives = np.where(members, -np.inf, scores)
    neg_count = (~members).sum(axis=1)
    allowed = np.floor(fpr * neg_count + 1e-9).astype(np.int64)
    neg_sorted = -np.sort(-negatives, axis=1)  # descending, -inf (members) at the end
    # Threshold: strictly above the (allowed+1)-th largest negative, so at most `allowed` negatives pass.
    index = np.minimum(allowed, scores.shape[1] - 1)
    threshold = np.take_along_axis(neg_sorted, index[:, None], axis=1)
    threshold = np.where((allowed >= neg_count)[:, None], -np.inf, threshold)
    hits = (scores > threshold) & members
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits.sum(axis=1) / members.sum(axis=1)


def _replicates(count: int, rounds: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap index rows; stratified by membership so every replicate keeps both classes."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, count, size=(rounds, count))
    picks = []
    for label in (True, False):
        pool = np.flatnonzero(strata == label)
        picks.append(pool[rng.integers(0, len(pool), size=(rounds, len(pool)))])
    return np.concatenate(picks, axis=1)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 6), "ci_low": round(self.low, 6), "ci_high": round(self.high, 6)}


def _interval(point: float, samples: np.ndarray, confidence: float) -> Interval:
    alpha = (1 - confidence) / 2
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return Interval(point, point, point)
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return Interval(point, float(low), float(high))


@dataclass(frozen=True)
class AttackFigures:
    """One attack's ROC with AUC and TPR at each FPR level, each with a bootstrap interval."""

    roc: Roc
    auc: Interval
    tpr: dict[float, Interval]
    members: int
    non_members: int
    bootstrap: int
    confidence: float
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat gate keys: ``<prefix>auc``, ``<prefix>tpr_at_1pct_fpr`` and their ``_ci_low``/``_ci_high``."""
        out: dict[str, float] = {}
        for name, interval in (("auc", self.auc), *((f"tpr_at_{fpr_key(f)}_fpr", i) for f, i in self.tpr.items())):
            out[f"{prefix}{name}"] = round(interval.value, 6)
            out[f"{prefix}{name}_ci_low"] = round(interval.low, 6)
            out[f"{prefix}{name}_ci_high"] = round(interval.high, 6)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc.to_dict(),
            "tpr_at_fpr": {fpr_key(f): i.to_dict() for f, i in self.tpr.items()},
            "members": self.members,
            "non_members": self.non_members,
            "bootstrap": self.bootstrap,
            "confidence": self.confidence,
            "roc": self.roc.rows(),
            **self.extra,
        }


def attack_figures(
    scores: np.ndarray,
    members: np.ndarray,
    *,
    fprs: Sequence[float] = FPR_LEVELS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> AttackFigures:
    """ROC, AUC and TPR@FPR of one attack with stratified percentile-bootstrap intervals."""
    scores, members = _check(scores, members)
    roc = roc_curve(scores, members)
    index = _replicates(len(scores), bootstrap, seed, strata=members)
    s, m = scores[index], members[index]
    auc = _interval(roc.auc, _auc_batch(s, m), confidence)
    tprs = {f: _interval(tpr_at_fpr(roc, f), _tpr_at_fpr_batch(s, m, f), confidence) for f in fprs}
    return AttackFigures(roc, auc, tprs, int(members.sum()), int((~members).sum()), bootstrap, confidence)


@dataclass(frozen=True)
class Difference:
    """Candidate minus reference for AUC and each TPR@FPR, with paired-bootstrap intervals."""

    auc: Interval
    tpr: dict[float, Interval]

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc.to_dict(), "tpr_at_fpr": {fpr_key(f): i.to_dict() for f, i in self.tpr.items()}}


def paired_difference(
    candidate: np.ndarray,
    reference: np.ndarray,
    members: np.ndarray,
    *,
    fprs: Sequence[float] = FPR_LEVELS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Difference:
    """The amplification (candidate figure minus reference figure) on the same records.

    ``candidate`` and ``reference`` score the same records (same order, same membership); each
    bootstrap replicate resamples the records once and applies the draw to both models, so the
    interval reflects the record-level noise the two share instead of adding two independent ones.
    """
    candidate, members = _check(candidate, members)
    reference, _ = _check(reference, members)
    if candidate.shape != reference.shape:
        raise ValueError(f"{len(candidate)} candidate scores for {len(reference)} reference scores")
    index = _replicates(len(members), bootstrap, seed, strata=members)
    m = members[index]
    c, r = candidate[index], reference[index]
    roc_c, roc_r = roc_curve(candidate, members), roc_curve(reference, members)
    auc = _interval(roc_c.auc - roc_r.auc, _auc_batch(c, m) - _auc_batch(r, m), confidence)
    tpr = {
        f: _interval(
            tpr_at_fpr(roc_c, f) - tpr_at_fpr(roc_r, f),
            _tpr_at_fpr_batch(c, m, f) - _tpr_at_fpr_batch(r, m, f),
            confidence,
        )
        for f in fprs
    }
    return Difference(auc, tpr)


__all__ = [
    "FPR_LEVELS",
    "AttackFigures",
    "Difference",
    "Interval",
    "Roc",
    "attack_figures",
    "fpr_key",
    "paired_difference",
    "roc_curve",
    "tpr_at_fpr",
]
