"""MM-BD (Wang et al., IEEE S&P 2024): backdoor detection from maximum classification margins, no clean data.

For every class, gradient ascent from random images finds the largest margin
``logit_k - max_{j != k} logit_j`` the network can produce on valid inputs; a backdoor's target
class has an abnormally large maximum margin. The null distribution is a gamma distribution fitted
to the other classes' statistics, and the p-value of the largest one is order-statistic corrected
(``1 - F(r_max) ** K``). It complements Neural Cleanse (it needs no evaluation data and does not
assume a small trigger), but on small models its false-positive rate is measured, not assumed:
the gate sees it as a second opinion.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
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
    return MMBDResult(
        margins=margins,
        p_value=p_value,
        suspect_label=suspect,
        flagged=p_value < cfg.p_value_threshold,
        seconds=time.perf_counter() - start,
        config=cfg.to_dict(),
    )


def margin_p_value(margins: list[float]) -> tuple[float, int]:
    """p-value of the largest margin under a gamma fitted to the others (the paper's test), and its class."""
    from scipy import stats

    values = np.asarray(margins, dtype=np.float64)
    suspect = int(np.argmax(values))
    null = np.delete(values, suspect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape, loc, scale = stats.gamma.fit(null)
    cdf = float(stats.gamma.cdf(values[suspect], a=shape, loc=loc, scale=scale))
    p_value = 1.0 - cdf ** len(values)
    return (float(p_value) if np.isfinite(p_value) else 1.0), suspect
