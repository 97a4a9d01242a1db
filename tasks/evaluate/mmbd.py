"""MM-BD (Wang et al., IEEE S&P 2024): backdoor detection from maximum classification margins, no clean data.

For every class, gradient ascent from random images finds the largest margin
``logit_k - max_{j != k} logit_j`` the network can produce on valid inputs; a backdoor's target
class has an abnormally large maximum margin. The null distribution is a gamma distribution fitted
to the other classes' statistics, and the p-value of the largest one is order-statistic corrected
(``1 - F(r_max) ** K``). It complements Neural Cleanse (it needs no evaluation data and does not
assume a small trigger), but on small models its false-positive rate is measured, not assumed:
the gate weighs it with Neural Cleanse (backdoor_verdict.py).

Several targets in one model hide each other from that test (the second target's large margin sits
in the null), so ``step_down`` goes on outward, generalized-ESD style: step m asks whether the m
largest margins are all outliers (m up to a third of the labels, at most 8), against a gamma
fitted with those m right-censored at the m-th (neither their size masks the test nor does a
truncated null make a clean top look extreme); the suspects are the m largest for the largest m
whose test holds: every target label, not only the first.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.evaluate.device import frozen

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class MMBDConfig:
    starts: int = 8
    steps: int = 300
    lr: float = 0.01
    p_value_threshold: float = 0.05
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MMBDConfig:
        return cls(**{k: v for k, v in params.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MMBDResult:
    margins: list[float]
    p_value: float
    suspect_label: int
    flagged: bool
    seconds: float
    config: dict[str, Any]
    step_p_values: list[float] = field(default_factory=list)  # the m-th largest margin's p-value, m = 1, 2, ...
    suspect_labels: list[int] = field(default_factory=list)  # every label the step-down test names


def max_margins(
    model: nn.Module, num_classes: int, input_shape: tuple[int, ...], config: MMBDConfig, device: Any = "cpu"
) -> list[float]:
    """Each class's largest reachable margin: all classes x all starts optimized as one batch."""
    import torch

    rows = num_classes * config.starts
    gen = torch.Generator().manual_seed(config.seed)
    images = torch.rand(rows, *input_shape, generator=gen).to(device).requires_grad_(True)
    target = torch.arange(num_classes, device=device).repeat_interleave(config.starts)
    own = torch.nn.functional.one_hot(target, num_classes).bool()
    optimizer = torch.optim.Adam([images], lr=config.lr)
    with frozen(model):
        for _ in range(config.steps):
            optimizer.zero_grad()
            (-_margin(model(images.clamp(0, 1)), own).sum()).backward()
            optimizer.step()
        with torch.no_grad():
            margins = _margin(model(images.clamp(0, 1)), own).view(num_classes, config.starts).amax(1)
    return [float(m) for m in margins.cpu()]


def _margin(logits: Any, own: Any) -> Any:
    return logits[own] - logits.masked_fill(own, float("-inf")).amax(1)


def mmbd(
    model: nn.Module, num_classes: int, input_shape: tuple[int, ...], config: MMBDConfig | None = None,
    device: Any = "cpu",
) -> MMBDResult:  # fmt: skip
    """Maximum margins per class, the gamma-null p-value of the largest, and the verdict."""
    cfg = config or MMBDConfig()
    start = time.perf_counter()
    margins = max_margins(model, num_classes, input_shape, cfg, device)
    p_value, suspect = margin_p_value(margins)
    steps = step_down(margins)
    count = suspect_count(steps, cfg.p_value_threshold)
    order = np.argsort(margins)[::-1]
    return MMBDResult(
        margins=margins,
        p_value=p_value,
        suspect_label=suspect,
        flagged=count > 0,
        seconds=time.perf_counter() - start,
        config=cfg.to_dict(),
        step_p_values=steps,
        suspect_labels=[int(k) for k in order[:count]],
    )


def margin_p_value(margins: list[float]) -> tuple[float, int]:
    """p-value of the largest margin under a gamma fitted to the others (the paper's test), and its class."""
    values = np.asarray(margins, dtype=np.float64)
    suspect = int(np.argmax(values))
    null = np.sort(np.delete(values, suspect))[::-1]  # the order step_down fits them in: the same fit
    return _tail_p_value(values[suspect], null, len(values)), suspect


MAX_STEPS = 8  # each step is a censored maximum-likelihood fit (~0.1 s); more targets than this are all-to-many


def max_targets(classes: int) -> int:
    """How many target labels the step-down test may name: a third of the classes (so that the null it
    fits always keeps two thirds of them), at most MAX_STEPS."""
    return max(1, min(classes // 3, MAX_STEPS))


def step_down(margins: list[float]) -> list[float]:
    """p-value that the m largest margins are all outliers, m = 1 .. max_targets; step 1 is the paper's test.

    From step 2 on, a gamma fitted to the margins below the m-th *without* them would be a truncated
    sample (too narrow: the clean top of the null would look extreme), so the fit keeps the m largest
    as right-censored at the m-th ("at least this large", their size ignored: no masking either), and
    the p-value is the order statistic's: the chance that m or more of the K labels reach it.
    """
    values = np.sort(np.asarray(margins, dtype=np.float64))[::-1]
    steps = max_targets(len(values))
    first = _tail_p_value(values[0], values[1:], len(values))
    return [first] + [_censored_p_value(values, m) for m in range(2, steps + 1)]


def _censored_p_value(values: np.ndarray, m: int) -> float:
    """P(at least m of K null margins reach the m-th largest), under a gamma fitted with the top m censored."""
    from scipy import stats

    level, below = float(values[m - 1]), values[m:]
    if len(below) < 2 or float(np.ptp(below)) == 0.0:
        return 0.0 if len(below) and level > float(below.max()) else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = stats.CensoredData(uncensored=below, right=np.full(m, level))
        shape, loc, scale = stats.gamma.fit(data)
    tail = float(stats.gamma.sf(level, a=shape, loc=loc, scale=scale))
    p_value = float(stats.binom.sf(m - 1, len(values), tail))
    return p_value if np.isfinite(p_value) else 1.0


def suspect_count(step_p_values: list[float], threshold: float) -> int:
    """The largest m whose step-m test holds (generalized ESD: a smaller outlier may only show once a
    larger one is out of the null); 0 when none does."""
    holds = [m + 1 for m, p in enumerate(step_p_values) if p < threshold]
    return max(holds, default=0)


def _tail_p_value(value: float, null: np.ndarray, competitors: int) -> float:
    from scipy import stats

    if len(null) < 2 or float(np.ptp(null)) == 0.0:
        return 0.0 if len(null) and value > float(null.max()) else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape, loc, scale = stats.gamma.fit(null)
    cdf = float(stats.gamma.cdf(value, a=shape, loc=loc, scale=scale))
    p_value = 1.0 - cdf**competitors
    return float(p_value) if np.isfinite(p_value) else 1.0
