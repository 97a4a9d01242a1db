"""PGD (Madry et al. 2018) under L-inf and L2, batched over all samples, with random starts and restarts.

A sample counts as robust only if no iterate of any restart is misclassified; a sample is dropped
from the batch as soon as an adversarial example is found (it is recorded, not attacked further),
so later steps and restarts only spend time on samples still standing. Images are in [0, 1] and
the model normalizes inside, so epsilons are in pixel units. Random starts come from a seeded
generator on the CPU, so results are deterministic for a seed on any device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tasks.evaluate.device import frozen

if TYPE_CHECKING:
    import torch
    from torch import nn

NORMS = ("linf", "l2")


@dataclass(frozen=True)
class PGDConfig:
    """One attack: ``step_size`` is absolute; ``from_params`` derives it from ``relative_step_size * eps``."""

    norm: str
    eps: float
    steps: int = 20
    step_size: float = 0.0
    restarts: int = 1
    random_start: bool = True
    seed: int = 0
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"pgd: norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.eps < 0 or self.steps < 1 or self.restarts < 1 or self.batch_size < 1:
            raise ValueError("pgd: eps must be >= 0 and steps, restarts, batch_size >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RobustnessReport:
    """Clean accuracy and, per (norm, eps), robust accuracy and attack success rate."""

    samples: int
    clean_accuracy: float
    rows: list[dict[str, Any]]
    seconds: float

    def metrics(self, prefix: str = "adversarial") -> dict[str, float | int]:
        out: dict[str, float | int] = {
            f"{prefix}.clean_accuracy": self.clean_accuracy,
            f"{prefix}.samples": self.samples,
        }
        for row in self.rows:
            key = f"{row['norm']}.{eps_key(row['eps'])}"
            out[f"{prefix}.robust_accuracy.{key}"] = row["robust_accuracy"]
            out[f"{prefix}.attack_success_rate.{key}"] = row["attack_success_rate"]
        return out

    def csv(self) -> str:
        """``eps,norm,robust_accuracy`` with the eps=0 point (clean accuracy) of each norm, for a DVC plot."""
        lines = ["eps,norm,robust_accuracy"]
        for norm in sorted({row["norm"] for row in self.rows}):
            points = {0.0: self.clean_accuracy} | {
                r["eps"]: r["robust_accuracy"] for r in self.rows if r["norm"] == norm
            }
            lines += [f"{eps_key(eps)},{norm},{acc:.6f}" for eps, acc in sorted(points.items())]
        return "\n".join(lines) + "\n"


def eps_key(eps: float) -> str:
    """Stable text for an epsilon in metric keys and tables: ``0.03``, ``0.1``, ``0.5``."""
    return f"{float(eps):g}"


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: PGDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial images and a robust mask (True where every restart failed); wrong clean samples count as broken."""
    import torch

    gen = torch.Generator().manual_seed(config.seed)
    adversarial = x.clone()
    robust = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    with frozen(model):
        for chunk in _chunks(len(y), config.batch_size, x.device):
            xb, yb = x[chunk], y[chunk]
            with torch.no_grad():
                standing = model(xb).argmax(1) == yb
            found = xb.clone()
            for _ in range(config.restarts if config.eps > 0 else 0):
                ids = torch.nonzero(standing).flatten()
                if len(ids) == 0:
                    break
                adv, broken = _attack(model, xb[ids], yb[ids], config, gen)
                found[ids[broken]] = adv[broken]
                standing[ids[broken]] = False
            adversarial[chunk], robust[chunk] = found, standing
    return adversarial, robust


def evaluate_robustness(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Iterable[PGDConfig]
) -> RobustnessReport:
    """Clean accuracy, then every attack on the same samples."""
    import torch

    start = time.perf_counter()
    with torch.no_grad(), frozen(model):
        correct = torch.cat([model(x[c]).argmax(1) == y[c] for c in _chunks(len(y), 1024, x.device)])
    clean = float(correct.float().mean())
    rows = []
    for cfg in attacks:
        t0 = time.perf_counter()
        _, robust = pgd(model, x, y, cfg)
        robust_acc = float(robust.float().mean())
        broken = int((correct & ~robust).sum())
        rows.append(
            {
                "norm": cfg.norm,
                "eps": float(cfg.eps),
                "robust_accuracy": robust_acc,
                "attack_success_rate": broken / max(int(correct.sum()), 1),
                "seconds": round(time.perf_counter() - t0, 4),
                "config": cfg.to_dict(),
            }
        )
    return RobustnessReport(len(y), clean, rows, time.perf_counter() - start)


def _chunks(count: int, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    import torch

    for start in range(0, count, size):
        yield torch.arange(start, min(start + size, count), device=device)


def _random_start(x: torch.Tensor, config: PGDConfig, gen: torch.Generator) -> torch.Tensor:
    import torch

    if not config.random_start:
        return torch.zeros_like(x)
    if config.norm == "linf":
        return ((torch.rand(x.shape, generator=gen) * 2 - 1) * config.eps).to(x.device)
    direction = torch.randn(x.shape, generator=gen)
    direction /= direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    radius = torch.rand(len(x), generator=gen).view(-1, *([1] * (x.dim() - 1)))
    return (direction * radius * config.eps).to(x.device)


def _project(delta: torch.Tensor, config: PGDConfig) -> torch.Tensor:
    if config.norm == "linf":
        return delta.clamp(-config.eps, config.eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (config.eps / norms).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def _attack(
    model: nn.Module, x0: torch.Tensor, y: torch.Tensor, config: PGDConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One restart; returns the adversarial images found and which samples broke, for all of ``x0``."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's usual alias

    found = x0.clone()
    broken = torch.zeros(len(y), dtype=torch.bool, device=x0.device)
    ids = torch.arange(len(y), device=x0.device)
    x_adv = (x0 + _random_start(x0, config, gen)).clamp(0, 1)
    origin, labels = x0, y
    for step in range(config.steps + 1):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        wrong = logits.argmax(1) != labels
        if wrong.any():
            found[ids[wrong]] = x_adv.detach()[wrong]
            broken[ids[wrong]] = True
        if step == config.steps or bool(wrong.all()):
            break
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x_adv)
        with torch.no_grad():
            keep = ~wrong
            x_adv, grad, origin, labels, ids = x_adv[keep], grad[keep], origin[keep], labels[keep], ids[keep]
            if config.norm == "linf":
                step_dir = grad.sign()
            else:
                step_dir = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
            x_adv = (origin + _project(x_adv + config.step_size * step_dir - origin, config)).clamp(0, 1)
    return found, broken
