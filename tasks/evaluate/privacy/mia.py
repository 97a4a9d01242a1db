"""Membership inference on image classifiers: the LOSS attack and offline LiRA, and the membership stage.

LOSS (Yeom et al. 2018) scores a record by the negative cross-entropy the target model gives it:
training members tend to have a lower loss. Offline LiRA (Carlini et al. 2022, "Membership Inference
Attacks From First Principles") calibrates that per record: reference ("shadow") models of the same
architecture are trained from a fresh initialization on random halves of the non-member pool only
(the population data), so no reference model ever sees a member. For each record, the logit-scaled
confidence ``phi = log(p_y / (1 - p_y))`` under the reference models that did *not* train on it is
its OUT distribution, a Gaussian; the score is how far the target's ``phi`` lies above it,
``z = (phi_target - mu_out) / sigma`` (one-sided: ``P(phi_target > OUT) = Phi(z)``, same ranking).

Choices for a small number of reference models, as the paper recommends: a global variance
(pooled over all records) instead of a per-record one, and a balanced design: the pool is cut into
``K`` blocks, reference model ``k`` trains on ``K * shadow_fraction`` consecutive blocks, so each
pool record is IN for exactly that many models and OUT for the rest. Every record, member or not,
is scored against the same number of OUT models (members, OUT for all, use a random subset of that
size), so the estimator noise does not differ between members and non-members. Queries carry no
augmentation. All reference models train at once: their weights are stacked and one ``vmap`` of
``functional_call`` runs every model on its own mini-batch per step (models with batch norm,
whose running statistics cannot update under vmap, train one after another instead).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelgate.evidence import StageEvidence
from tasks.evaluate.adapters import load_image_classifier
from tasks.evaluate.harness import (
    file_digest,
    guarded,
    image_classifier_info,
    opened_evidence,
    output_dir,
    require_eval_data,
    section_params,
    stage_device,
)
from tasks.evaluate.privacy.members import MembershipData, load_membership_data
from tasks.evaluate.privacy.metrics import AttackFigures, attack_figures
from tasks.evaluate.privacy.rocplot import roc_png

if TYPE_CHECKING:
    import torch
    from torch import nn

MEMBERSHIP = "membership"
QUERY_BATCH = 1024

DEFAULT_MEMBERSHIP_PARAMS: dict[str, Any] = {
    "reference_models": 8,  # LiRA shadow models (more: tighter OUT estimates, linear cost)
    "shadow_fraction": 0.5,  # share of the non-member pool each reference model trains on
    "fixed_variance": True,  # one pooled variance for all records (the paper's choice for few models)
    "shadow": {"epochs": 30, "lr": 0.003, "batch_size": 32, "weight_decay": 0.0},  # Adam, like the demo's recipe
    "bootstrap": 1000,
    "confidence": 0.95,
    "fprs": [0.01, 0.001],
    "max_records": 20000,  # at most this many records (members and non-members, ratio kept)
    "cpu_threads": 1,  # torch threads on the CPU (0: torch's default); 1 is reproducible and fastest when shared
    "seed": 0,
}


@dataclass(frozen=True)
class ShadowRecipe:
    """How reference models are trained: Adam with these settings on their share of the pool."""

    epochs: int = 30
    lr: float = 0.003
    batch_size: int = 32
    weight_decay: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ShadowRecipe:
        recipe = cls(
            int(params.get("epochs", cls.epochs)),
            float(params.get("lr", cls.lr)),
            int(params.get("batch_size", cls.batch_size)),
            float(params.get("weight_decay", cls.weight_decay)),
        )
        if recipe.epochs < 1 or recipe.batch_size < 1 or not recipe.lr > 0 or recipe.weight_decay < 0:
            raise ValueError(f"membership.shadow: epochs and batch_size >= 1, lr > 0, weight_decay >= 0 ({recipe})")
        return recipe


@dataclass(frozen=True)
class LiraConfig:
    """Offline LiRA settings (see the module docstring for what each choice means)."""

    reference_models: int = 8
    shadow_fraction: float = 0.5
    fixed_variance: bool = True
    recipe: ShadowRecipe = ShadowRecipe()
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LiraConfig:
        config = cls(
            int(params.get("reference_models", cls.reference_models)),
            float(params.get("shadow_fraction", cls.shadow_fraction)),
            bool(params.get("fixed_variance", cls.fixed_variance)),
            ShadowRecipe.from_params(params.get("shadow") or {}),
            int(params.get("seed", cls.seed)),
        )
        in_models = config.in_models
        if not 1 <= in_models < config.reference_models:
            raise ValueError(
                f"membership: {config.reference_models} reference models with shadow_fraction "
                f"{config.shadow_fraction:g} leave no IN or no OUT model per record"
            )
        if config.reference_models - in_models < 2:
            raise ValueError(
                f"membership: {config.reference_models} reference models with shadow_fraction "
                f"{config.shadow_fraction:g} leave {config.reference_models - in_models} OUT model per record; "
                "the OUT variance needs at least 2"
            )
        return config

    @property
    def in_models(self) -> int:
        """Reference models each pool record trains (``round(K * shadow_fraction)``)."""
        return int(round(self.reference_models * self.shadow_fraction))

    @property
    def out_models(self) -> int:
        """Reference models every record is scored against."""
        return self.reference_models - self.in_models

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_models": self.in_models, "out_models": self.out_models}


@dataclass(frozen=True)
class LiraResult:
    """Per-record LiRA scores with the OUT statistics they came from, and the reference models' quality."""

    scores: np.ndarray
    phi_target: np.ndarray
    mu_out: np.ndarray
    sigma_out: np.ndarray
    in_mask: np.ndarray  # (K, N): record n was in reference model k's training set
    reference_accuracy: list[float]  # each reference model's accuracy on the records it did not train on
    config: LiraConfig
    train_seconds: float
    seconds: float
    generic_init: tuple[str, ...] = ()  # parameters re-initialized generically (no layer resets them)

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "reference_accuracy_out": [round(a, 4) for a in self.reference_accuracy],
            "reference_train_records": int(self.in_mask.sum(axis=1)[0]),
            "sigma_out_median": round(float(np.median(self.sigma_out)), 6),
            "generic_init": list(self.generic_init),
            "train_seconds": round(self.train_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = QUERY_BATCH) -> torch.Tensor:
    """The model's logits for ``x`` in large batches, no gradients, on the model's device."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(chunk.to(device)).float() for chunk in x.split(batch_size)])


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log(p_y / (1 - p_y))`` computed stably as ``z_y - logsumexp_{j != y} z_j`` (any leading dims)."""
    import torch

    label = y.expand(logits.shape[:-1]).unsqueeze(-1)
    true = logits.gather(-1, label).squeeze(-1)
    others = logits.scatter(-1, label, float("-inf"))
    return true - torch.logsumexp(others, dim=-1)


def loss_scores(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The LOSS attack: ``-cross_entropy = log p_y`` per record (higher: more likely a member).

    Computed as ``-softplus(-phi)`` in float64 from the log-odds, so confident records keep distinct
    scores (a float32 cross-entropy rounds them all to 0 and the low-FPR end of the ROC becomes ties).
    """
    import torch.nn.functional as F  # noqa: N812 - torch's usual alias

    phi = logit_confidence(logits.double(), y.to(logits.device))
    return (-F.softplus(-phi)).cpu().numpy()


def balanced_assignment(pool: int, models: int, in_models: int, seed: int) -> np.ndarray:
    """``(models, pool)`` IN mask: every record IN for exactly ``in_models`` models, equal training sets.

    The shuffled pool is cut into ``models`` blocks of equal size; model ``k`` trains on blocks
    ``k, k+1, ..., k+in_models-1`` (mod ``models``). The few records left over by the cut are OUT
    for every model.
    """
    rng = np.random.default_rng(seed)
    block = pool // models
    if block < 1:
        raise ValueError(f"membership: {pool} non-member records cannot feed {models} reference models")
    order = rng.permutation(pool)
    mask = np.zeros((models, pool), dtype=bool)
    for k in range(models):
        for b in range(k, k + in_models):
            start = (b % models) * block
            mask[k, order[start : start + block]] = True
    return mask


def fresh_copies(template: nn.Module, count: int, seed: int) -> list[nn.Module]:
    """``count`` copies of ``template`` re-initialized from scratch (seeded): same architecture, no trained weight.

    Every layer with ``reset_parameters`` is reset; parameters no layer resets (a ViT's position
    embeddings, say) are drawn from a truncated normal (std 0.02), the usual transformer init.
    """
    import torch

    copies, generic = [], generic_parameters(template)
    with torch.random.fork_rng(devices=[]):
        for k in range(count):
            torch.manual_seed(seed * 1000 + k)
            model = copy.deepcopy(template)
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in generic:
                        torch.nn.init.trunc_normal_(p, std=0.02)
            for p in model.parameters():
                p.requires_grad_(True)
            copies.append(model)
    return copies


def generic_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters that no layer's ``reset_parameters`` re-initializes."""
    covered = {
        id(p) for m in model.modules() if callable(getattr(m, "reset_parameters", None)) for p in m.parameters(False)
    }
    return {name for name, p in model.named_parameters() if id(p) not in covered}


def _has_batch_norm(model: nn.Module) -> bool:
    from torch.nn.modules.batchnorm import _BatchNorm

    return any(isinstance(m, _BatchNorm) for m in model.modules())


def shadow_batches(in_mask: np.ndarray, recipe: ShadowRecipe, seed: int) -> list[torch.Tensor]:
    """Per step, a ``(K, B)`` index tensor: each model's own shuffled training records, epoch after epoch.

    Public so a test can replay the exact mini-batches of the batched training one model at a time.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    own = torch.from_numpy(np.stack([np.flatnonzero(row) for row in in_mask]))  # equal sizes by design
    steps = []
    for _ in range(recipe.epochs):
        order = torch.argsort(torch.rand(own.shape, generator=generator), dim=1)
        steps += list(own.gather(1, order).split(recipe.batch_size, dim=1))
    return steps


def train_reference_models(
    template: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    in_mask: np.ndarray,
    recipe: ShadowRecipe,
    seed: int,
    batched: bool | None = None,
) -> list[nn.Module]:
    """Train ``K = len(in_mask)`` fresh copies of ``template``, model ``k`` on the records ``in_mask[k]``.

    ``x``/``y`` hold the pool and live on the training device. Batched (the default without batch
    norm), every step runs all models together (stacked weights, one vmap); Adam is elementwise, so
    one optimizer over the stacked weights is K independent optimizers. ``batched=False`` trains
    them one after another on the same mini-batches (the same models up to float rounding).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's usual alias
    from torch.func import functional_call, stack_module_state, vmap

    models = [m.to(x.device) for m in fresh_copies(template, len(in_mask), seed)]
    steps = [s.to(x.device) for s in shadow_batches(in_mask, recipe, seed)]
    if batched is None:
        batched = not _has_batch_norm(template)
    if not batched:
        for k, model in enumerate(models):
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
            for step in steps:
                optimizer.zero_grad()
                F.cross_entropy(model(x[step[k]]), y[step[k]]).backward()
                optimizer.step()
            model.eval()
        return models
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta").train()

    def loss_one(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    loss_all = vmap(loss_one, randomness="different")
    optimizer = torch.optim.Adam(params.values(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    for step in steps:
        optimizer.zero_grad()
        loss_all(params, buffers, x[step], y[step]).sum().backward()
        optimizer.step()
    with torch.no_grad():
        for k, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][k])
            model.eval()
    return models


def reference_logits(models: list[nn.Module], x: torch.Tensor, batch_size: int = QUERY_BATCH) -> torch.Tensor:
    """``(K, N, classes)`` logits of every reference model on ``x`` (stacked and vmapped when possible)."""
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    if _has_batch_norm(models[0]):
        return torch.stack([logits_of(m, x, batch_size) for m in models])
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta").eval()

    def run(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))

    device = params[next(iter(params))].device
    chunk = max(1, batch_size // len(models))
    with torch.no_grad():
        parts = [vmap(run, in_dims=(0, 0, None))(params, buffers, c.to(device)) for c in x.split(chunk)]
    return torch.cat(parts, dim=1).float()


def lira_offline(
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pool: np.ndarray,
    config: LiraConfig,
    target_logits: torch.Tensor | None = None,
) -> LiraResult:
    """Offline LiRA scores of every record of ``x`` against reference models trained on ``pool`` records.

    ``pool`` (bool, N) marks the records reference models may train on: population data, known
    non-members. ``x``/``y`` live on the target's device; ``target_logits`` saves a pass when known.
    """
    import torch

    start = time.perf_counter()
    pool_index = np.flatnonzero(pool)
    k, out_count = config.reference_models, config.out_models
    in_pool = balanced_assignment(len(pool_index), k, config.in_models, config.seed)
    in_mask = np.zeros((k, len(y)), dtype=bool)
    in_mask[:, pool_index] = in_pool
    train_start = time.perf_counter()
    pool_t = torch.from_numpy(pool_index).to(x.device)
    models = train_reference_models(target, x[pool_t], y[pool_t], in_pool, config.recipe, config.seed)
    train_seconds = time.perf_counter() - train_start
    ref_logits = reference_logits(models, x)  # (K, N, C)
    phi_ref = logit_confidence(ref_logits, y).double().cpu().numpy()  # (K, N)
    own = target_logits if target_logits is not None else logits_of(target, x)
    phi_target = logit_confidence(own, y).double().cpu().numpy()
    out = out_selection(in_mask, out_count, config.seed)
    phi_out = np.where(out, phi_ref, np.nan)
    mu = np.nanmean(phi_out, axis=0)
    if config.fixed_variance:
        pooled = float(np.nanvar(phi_out, axis=0, ddof=1).mean())
        sigma = np.full_like(mu, math.sqrt(max(pooled, 1e-12)))
    else:
        sigma = np.sqrt(np.maximum(np.nanvar(phi_out, axis=0, ddof=1), 1e-12))
    correct = (ref_logits.argmax(-1).cpu() == y.cpu()[None]).numpy()
    accuracy = [float(correct[i][~in_mask[i]].mean()) for i in range(k)]
    scores = (phi_target - mu) / sigma
    seconds = time.perf_counter() - start
    generic = tuple(sorted(generic_parameters(target)))
    return LiraResult(scores, phi_target, mu, sigma, in_mask, accuracy, config, train_seconds, seconds, generic)


def out_selection(in_mask: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``(K, N)``: for each record, exactly ``count`` of the models it was OUT for, chosen at random.

    The same number of OUT models for every record keeps the estimator noise equal for members and non-members.
    """
    rng = np.random.default_rng(seed + 1)
    keys = np.where(in_mask, np.inf, rng.random(in_mask.shape))
    rank = np.argsort(np.argsort(keys, axis=0), axis=0)
    return (rank < count) & ~in_mask


def membership_stage(
    model_dir: str | Path, eval_data: str, params: Mapping[str, Any] | None = None, out_dir: str | Path | None = None
) -> StageEvidence:
    """LOSS and offline LiRA on an image classifier; ``pass`` when it ran (the policy judges the figures).

    ``params`` are the evaluate params (``device`` and a ``membership:`` section). Skipped for a model
    that is not an image classifier or data that does not say which records were members.
    """
    return guarded(MEMBERSHIP, lambda: _membership(Path(model_dir), eval_data, params or {}, output_dir(out_dir)))


def _membership(model_dir: Path, eval_data: str, params: Mapping[str, Any], out_dir: Path) -> StageEvidence:
    section = section_params(params, MEMBERSHIP, DEFAULT_MEMBERSHIP_PARAMS)
    info = image_classifier_info(model_dir)
    require_eval_data(eval_data)
    assert info.input_shape is not None and info.num_classes is not None
    data = load_membership_data(
        eval_data, input_shape=info.input_shape, num_classes=info.num_classes, label_names=info.label_names
    )
    data = cap_records(data, int(section["max_records"]), int(section["seed"]))
    config = LiraConfig.from_params(section)
    device = stage_device(params)
    model, _ = load_image_classifier(model_dir, device)
    x, y, member = data.x.to(device), data.y.to(device), data.member.numpy()
    with cpu_threads(device, int(section["cpu_threads"])):
        target_logits = logits_of(model, x)
        loss = loss_scores(target_logits, y)
        lira = lira_offline(model, x, y, ~member, config, target_logits=target_logits)
    fprs, bootstrap = [float(f) for f in section["fprs"]], int(section["bootstrap"])
    confidence, seed = float(section["confidence"]), int(section["seed"])

    def figures(scores: np.ndarray) -> AttackFigures:
        return attack_figures(scores, member, fprs=fprs, bootstrap=bootstrap, confidence=confidence, seed=seed)

    attacks = {"loss": figures(loss), "lira": replace(figures(lira.scores), extra=lira.summary())}
    correct = (target_logits.argmax(1) == y).cpu().numpy()
    inputs = {"eval_data": data.summary["digest"], "config.json": file_digest(model_dir / "config.json")}
    evidence = opened_evidence(MEMBERSHIP, device, inputs, {"model": info.to_dict(), "eval_data": data.summary})
    evidence.tools["loss_attack"] = "modelgate LOSS (Yeom et al. 2018)"
    evidence.tools["lira"] = "modelgate offline LiRA, batched reference models (Carlini et al. 2022)"
    evidence.metrics = {
        **attacks["loss"].metrics(f"{MEMBERSHIP}.loss_"),
        **attacks["lira"].metrics(f"{MEMBERSHIP}.lira_"),
        f"{MEMBERSHIP}.members": int(member.sum()),
        f"{MEMBERSHIP}.non_members": int((~member).sum()),
        f"{MEMBERSHIP}.reference_models": config.reference_models,
        f"{MEMBERSHIP}.train_accuracy": round(float(correct[member].mean()), 6),
        f"{MEMBERSHIP}.test_accuracy": round(float(correct[~member].mean()), 6),
    }
    evidence.details.update(
        {
            "config": {k: v for k, v in section.items() if k != "device"},
            "loss": attacks["loss"].to_dict(),
            "lira": attacks["lira"].to_dict(),
            "artifacts": write_membership_artifacts(out_dir / MEMBERSHIP, attacks, loss, lira.scores, member),
        }
    )
    return evidence


@contextmanager
def cpu_threads(device: torch.device, threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads on the CPU (restored after); 0 or a GPU leaves it alone.

    Float sums depend on the thread count, so a fixed count makes CPU results the same on every
    machine; and many small batched kernels on a shared CPU run several times faster on one thread
    than on threads that wait for each other.
    """
    import torch

    before = torch.get_num_threads()
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cap_records(data: MembershipData, limit: int, seed: int) -> MembershipData:
    """At most ``limit`` records, members and non-members subsampled in proportion (seeded, order kept)."""
    import torch

    total = len(data.y)
    if limit <= 0 or total <= limit:
        return data
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for side in (data.member, ~data.member):
        index = torch.nonzero(side).flatten()
        count = max(1, round(limit * len(index) / total))
        keep.append(index[torch.randperm(len(index), generator=generator)[:count]])
    return data.subset(torch.cat(keep).sort().values)


def write_membership_artifacts(
    folder: Path, attacks: Mapping[str, AttackFigures], loss: np.ndarray, lira: np.ndarray, member: np.ndarray
) -> dict[str, str]:
    """``roc.csv`` (attack, fpr, tpr: a DVC plot), ``roc.png`` and ``scores.csv`` (scores only, never the data)."""
    folder.mkdir(parents=True, exist_ok=True)
    roc_lines = ["attack,fpr,tpr"]
    for name, figures in attacks.items():
        roc_lines += [f"{name},{row['fpr']},{row['tpr']}" for row in figures.roc.rows()]
    roc_csv = folder / "roc.csv"
    roc_csv.write_text("\n".join(roc_lines) + "\n", encoding="utf-8")
    non_members = int((~member).sum())
    curves = {name: (f.roc.fpr, f.roc.tpr) for name, f in attacks.items()}
    roc_image = folder / "roc.png"
    roc_image.write_bytes(roc_png(curves, min_fpr=min(1e-3, 1.0 / max(non_members, 1))))
    score_lines = ["index,member,loss,lira"] + [
        f"{i},{int(m)},{s:.6g},{t:.6g}" for i, (m, s, t) in enumerate(zip(member, loss, lira, strict=True))
    ]
    scores_csv = folder / "scores.csv"
    scores_csv.write_text("\n".join(score_lines) + "\n", encoding="utf-8")
    return {"roc_csv": str(roc_csv), "roc_png": str(roc_image), "scores_csv": str(scores_csv)}


__all__ = [
    "DEFAULT_MEMBERSHIP_PARAMS",
    "LiraConfig",
    "LiraResult",
    "ShadowRecipe",
    "balanced_assignment",
    "cap_records",
    "cpu_threads",
    "fresh_copies",
    "generic_parameters",
    "lira_offline",
    "logit_confidence",
    "logits_of",
    "loss_scores",
    "membership_stage",
    "out_selection",
    "reference_logits",
    "shadow_batches",
    "train_reference_models",
    "write_membership_artifacts",
]
