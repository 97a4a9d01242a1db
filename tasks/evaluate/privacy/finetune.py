"""The organization's fine-tuning recipe applied to an image classifier, k copies at once, scored on canaries.

The privacy-backdoor audit (``audit.py``) fine-tunes the candidate and the reference the same way
and compares how much each makes the fine-tuning data leak. The canaries are evaluation images
with a random *wrong* label: the standard auditing choice (Jagielski et al. 2020, Nasr et al. 2023),
because a model can only fit them by memorizing that one record, so their loss change measures
memorization and nothing else. A canary's membership score is its loss before fine-tuning minus
its loss after (Watson et al. 2022 difficulty calibration: an image that is easy to relabel is not
mistaken for a member).

The k copies are fine-tuned in one batched computation: their parameters are stacked along a new
first axis, ``torch.func.vmap`` runs the forward pass of all copies over their own batches, and the
optimizer (SGD with momentum, or Adam: both element-wise, so one optimizer over the stacked tensors
is exactly k independent ones) updates them together. Fine-tuning runs in eval mode (batch-norm
statistics and dropout frozen), which keeps copies independent and deterministic for a seed. When
only the head trains, the frozen body runs once and the copies train a batched linear layer.

``layers: lora`` is the low-rank recipe (Hu et al. 2022): every ``nn.Linear`` stays frozen and
learns ``W + B A`` with ``A`` (rank x in) random and ``B`` (out x rank) zero at the start, so the
copy starts as the model itself; only the factors train. An attack tuned to a full fine-tune's
gradients (a trap that needs its own weights to move) can behave differently under it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.evaluate.adapters import load_image_classifier

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tasks.evaluate.data import EvalData

OPTIMIZERS = ("sgd", "adam")
LAYERS = ("all", "last", "lora")
SCORE_CHUNK = 1024  # canaries scored per batched forward pass


@dataclass(frozen=True)
class Recipe:
    """How the organization fine-tunes: optimizer, learning rate, steps, batch size, which layers train.

    ``canary_share`` is the audit's part: the share of every batch drawn from the member canaries
    (the rest from the ordinary fine-tuning data), so a few hundred mislabeled canaries do not
    swamp the organization's data; 0 mixes both uniformly. ``parallel`` is how many copies are
    fine-tuned in one batched computation (1 = one after the other).
    """

    steps: int = 100
    lr: float = 0.01
    batch_size: int = 64
    layers: str = "all"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    canary_share: float = 0.0
    parallel: int = 8
    rank: int = 4  # the low-rank factors' rank, for layers: lora

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.parallel < 1 or self.rank < 1:
            raise ValueError("recipe: steps, batch_size, parallel and rank must be positive integers")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"recipe.lr: expected a positive number, got {self.lr}")
        if self.layers not in LAYERS:
            raise ValueError(f"recipe.layers: expected one of {', '.join(LAYERS)}, got {self.layers!r}")
        if not 0.0 <= self.canary_share < 1.0:
            raise ValueError(f"recipe.canary_share: expected a share in [0, 1), got {self.canary_share}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Recipe:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"recipe: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in params.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CanarySplit:
    """Evaluation data cut three ways: mislabeled canaries, ordinary fine-tuning data, held-out utility data."""

    canaries_x: torch.Tensor
    canaries_y: torch.Tensor
    fine_tune_x: torch.Tensor
    fine_tune_y: torch.Tensor
    held_out_x: torch.Tensor
    held_out_y: torch.Tensor
    design: dict[str, Any]
    strata: np.ndarray  # each canary's true class: the audit reports the amplification per class too


CANARY_KINDS = ("mislabeled", "true_label")


def make_image_canaries(
    data: EvalData,
    count: int,
    seed: int = 0,
    held_out_fraction: float = 0.2,
    fine_tune_fraction: float = 0.2,
    kind: str = "mislabeled",
) -> CanarySplit:
    """Up to ``count`` canaries from one share of the images; the others fine-tune and measure utility.

    ``mislabeled`` canaries (one random wrong label each) measure how much a fine-tune memorizes
    what it cannot generalize; ``true_label`` canaries are the organization's records as they are,
    which is what a privacy backdoor that raises its targets' loss (Wen et al. 2024) exposes and a
    mislabeled canary can hide (its wrong label already has a high loss on every model).

    The three shares are disjoint, so no canary image is also seen with its true label, and every
    canary is a different image: the same image as a member with one wrong label and a non-member
    with another makes the non-member look like a member (fitting one label lowers the true class
    for both), so a small evaluation set yields fewer canaries rather than reused ones; the design
    records how many were asked for and how many there are.
    """
    import torch

    n = len(data.y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = max(1, round(held_out_fraction * n))
    tune = round(fine_tune_fraction * n)
    pool = order[held + tune :][:count]
    if len(pool) < 2:
        raise ValueError(f"canaries: {n} evaluation samples leave fewer than 2 images for canaries")
    if kind not in CANARY_KINDS:
        raise ValueError(f"canaries: unknown kind {kind!r} (use {', '.join(CANARY_KINDS)})")
    rng = np.random.default_rng(seed)
    true = data.y[pool].numpy()
    wrong = (true + rng.integers(1, data.num_classes, size=len(pool))) % data.num_classes
    labels = wrong if kind == "mislabeled" else true
    design = {
        "kind": "mislabeled evaluation images (one random wrong label each)"
        if kind == "mislabeled"
        else "evaluation images with their true labels",
        "requested": count,
        "canaries": len(pool),
        "fine_tune_samples": tune,
        "held_out_samples": held,
        "seed": seed,
        "score": "loss before fine-tuning minus loss after (difficulty-calibrated LOSS attack)",
    }
    return CanarySplit(
        data.x[pool],
        torch.from_numpy(labels.astype(np.int64)),
        data.x[order[held : held + tune]],
        data.y[order[held : held + tune]],
        data.x[order[:held]],
        data.y[order[:held]],
        design,
        true.astype(np.int64),
    )


class ClassifierCanaryTrainer:
    """Fine-tunes fresh copies of an image classifier on member canaries and scores every canary."""

    def __init__(
        self,
        model_dir: str | Path,
        canaries_x: torch.Tensor,
        canaries_y: torch.Tensor,
        fine_tune_x: torch.Tensor,
        fine_tune_y: torch.Tensor,
        held_out_x: torch.Tensor,
        held_out_y: torch.Tensor,
        recipe: Recipe | Mapping[str, Any],
        device: str | torch.device = "cpu",
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_params(recipe)
        self.model, _ = load_image_classifier(model_dir, self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lora = _linear_layers(self.model) if self.recipe.layers == "lora" else []
        self.trainable = [] if self.lora else _trainable_names(self.model, self.recipe.layers)
        self.canaries_x, self.canaries_y = canaries_x.to(self.device), canaries_y.to(self.device)
        self.held_out_x, self.held_out_y = held_out_x.to(self.device), held_out_y.to(self.device)
        self.train_x = torch.cat([self.canaries_x, fine_tune_x.to(self.device)])
        self.train_y = torch.cat([self.canaries_y, fine_tune_y.to(self.device)])
        self.head_only = False
        self.suffix = ""  # LoRA: the module holding every linear layer, run alone on cached inputs ("": none)
        if self.recipe.layers == "last":
            self._cache_head_inputs()
        elif self.lora:
            self._cache_lora_inputs()
        self._loss_before: torch.Tensor | None = None
        self.seconds = 0.0

    def canary_count(self) -> int:
        return len(self.canaries_y)

    def finetune_and_score(self, member_mask: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        """One fine-tuned copy: a score per canary (loss before minus after) and its held-out accuracy."""
        scores, utility = self.finetune_and_score_many(np.asarray(member_mask)[None], [seed])
        return scores[0], float(utility[0])

    def finetune_and_score_many(self, member_masks: np.ndarray, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """k copies (one per mask row and seed), ``recipe.parallel`` at a time: scores (k, canaries), utility (k,)."""
        masks = np.asarray(member_masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.canary_count() or masks.shape[0] != len(seeds):
            raise ValueError(f"member masks {masks.shape} do not match {len(seeds)} seeds x {self.canary_count()}")
        start = time.perf_counter()
        before = self.loss_before()
        scores, utility = [], []
        for lo in range(0, len(seeds), self.recipe.parallel):
            params = self._finetune(masks[lo : lo + self.recipe.parallel], seeds[lo : lo + self.recipe.parallel])
            after, accuracy = self._evaluate(params)
            scores.append((before[None] - after).cpu().numpy())
            utility.append(accuracy.cpu().numpy())
        self.seconds += time.perf_counter() - start
        return np.concatenate(scores).astype(np.float64), np.concatenate(utility).astype(np.float64)

    def loss_before(self) -> torch.Tensor:
        """Per-canary loss of the model as released (computed once)."""
        import torch

        if self._loss_before is None:
            base = self._start_params([0])  # the model as released (a LoRA copy starts with B = 0)
            with torch.no_grad():
                self._loss_before = self._per_sample(base, self.canaries_x, self.canaries_y)[0]
        return self._loss_before

    def _finetune(self, masks: np.ndarray, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """Fine-tune ``len(seeds)`` copies together; returns their stacked trainable parameters."""
        import torch
        import torch.nn.functional as F  # noqa: N812 - torch's usual alias

        k, recipe = len(seeds), self.recipe
        params = self._start_params(seeds)
        for p in params.values():
            p.requires_grad_(True)
        optimizer: torch.optim.Optimizer
        if recipe.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                list(params.values()), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
            )
        else:
            optimizer = torch.optim.Adam(list(params.values()), lr=recipe.lr, weight_decay=recipe.weight_decay)
        batches = torch.from_numpy(_batch_plan(masks, len(self.train_y) - masks.shape[1], seeds, recipe))
        batches = batches.to(self.device)
        forward = self._batched_forward(shared_input=False)
        for step in range(recipe.steps):
            index = batches[:, step]  # (k, batch)
            logits = forward(params, self.train_x[index])
            loss = F.cross_entropy(logits.flatten(0, 1), self.train_y[index].flatten()) * k
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return {n: p.detach() for n, p in params.items()}

    def _start_params(self, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """Each copy's trainable tensors before fine-tuning, stacked: the model's own, or LoRA factors.

        A LoRA copy's ``A`` is drawn from its own seed (scaled by 1/sqrt(in)), its ``B`` is zero.
        """
        import torch

        named = dict(self.model.named_parameters())
        if not self.lora:
            k = len(seeds)
            return {n: named[n].detach().unsqueeze(0).repeat(k, *([1] * named[n].dim())) for n in self.trainable}
        params: dict[str, torch.Tensor] = {}
        generators = [torch.Generator().manual_seed(int(seed) % 2**63) for seed in seeds]
        for prefix in self.lora:
            weight = named[f"{prefix}.weight"]
            out_features, in_features = weight.shape
            a = torch.stack([torch.randn(self.recipe.rank, in_features, generator=g) for g in generators])
            params[f"{prefix}.lora_a"] = (a / math.sqrt(in_features)).to(weight)
            params[f"{prefix}.lora_b"] = torch.zeros(len(seeds), out_features, self.recipe.rank).to(weight)
        return params

    def _evaluate(self, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-canary loss (k, canaries) and held-out accuracy (k,) of the fine-tuned copies."""
        import torch

        with torch.no_grad():
            after = self._per_sample(params, self.canaries_x, self.canaries_y)
            forward = self._batched_forward(shared_input=True)
            correct = torch.cat(
                [
                    forward(params, x).argmax(-1) == y
                    for x, y in zip(self.held_out_x.split(SCORE_CHUNK), self.held_out_y.split(SCORE_CHUNK), strict=True)
                ],
                dim=1,
            )
        return after, correct.float().mean(dim=1)

    def _per_sample(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812 - torch's usual alias

        forward = self._batched_forward(shared_input=True)
        losses = []
        for xc, yc in zip(x.split(SCORE_CHUNK), y.split(SCORE_CHUNK), strict=True):
            logits = forward(params, xc)  # (k, chunk, classes)
            losses.append(F.cross_entropy(logits.transpose(1, 2), yc[None].expand(len(logits), -1), reduction="none"))
        return torch.cat(losses, dim=1)

    def _cache_head_inputs(self) -> None:
        """With only the head training, the frozen body runs once: its outputs replace the images.

        Used when the model's logits are exactly the head applied to what it receives (checked on
        the data); the copies then fine-tune a batched linear layer, orders of magnitude cheaper.
        """
        if self._cache_inputs_of(self.trainable[0].rsplit(".", 1)[0]):
            self.head_only = True
            self._head_names = {name.rsplit(".", 1)[1]: name for name in self.trainable}

    def _cache_lora_inputs(self) -> None:
        """With LoRA on linear layers that all sit in one child module after a frozen body (a CNN's
        classifier), the body runs once and the copies fine-tune that module alone (checked as for the head)."""
        parents = {name.split(".", 1)[0] for name in self.lora}
        if len(parents) == 1 and all("." in name for name in self.lora) and self._cache_inputs_of(parents.pop()):
            self.suffix = self.lora[0].split(".", 1)[0]

    def _cache_inputs_of(self, prefix: str) -> bool:
        """Replace the images by what module ``prefix`` receives, when the logits are that module's output."""
        import torch

        module = self.model.get_submodule(prefix)
        captured: list[torch.Tensor] = []
        hook = module.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
        try:
            with torch.no_grad():
                feats, same = [], True
                for x in (self.canaries_x, self.train_x[len(self.canaries_x) :], self.held_out_x):
                    chunks = []
                    for xc in x.split(SCORE_CHUNK):
                        captured.clear()
                        logits = self.model(xc)
                        same = same and len(captured) == 1 and torch.allclose(module(captured[0]), logits)
                        chunks.append(captured[0] if captured else xc)
                    feats.append(torch.cat(chunks))
        finally:
            hook.remove()
        if not same:
            return False
        self.canaries_x, self.held_out_x = feats[0], feats[2]
        self.train_x = torch.cat([feats[0], feats[1]])
        return True

    def _batched_forward(self, shared_input: bool) -> Any:
        """``f(stacked_params, x)``: every copy's logits; ``x`` is (k, batch, ...) or shared (batch, ...)."""
        import torch
        from torch.func import functional_call, vmap

        model = self.model
        if self.head_only:
            weight, bias = self._head_names["weight"], self._head_names.get("bias")

            def head(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                out = torch.einsum("kbd,kcd->kbc" if x.dim() == 3 else "bd,kcd->kbc", x, p[weight])
                return out + p[bias][:, None] if bias else out

            return head

        frozen = {name: p.detach() for name, p in model.named_parameters()}
        lora, suffix = self.lora, self.suffix
        target = model.get_submodule(suffix) if suffix else model
        strip = len(suffix) + 1 if suffix else 0

        def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            if lora:  # each linear layer's weight plus its copy's low-rank update
                p = {f"{q}.weight"[strip:]: frozen[f"{q}.weight"] + p[f"{q}.lora_b"] @ p[f"{q}.lora_a"] for q in lora}
            return functional_call(target, p, (x,), strict=False)

        return vmap(one, in_dims=(0, None if shared_input else 0))


def _trainable_names(model: nn.Module, layers: str) -> list[str]:
    """All parameter names, or those of the last ``nn.Linear`` (the classification head) for ``last``."""
    from torch import nn

    if layers == "all":
        return [name for name, _ in model.named_parameters()]
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ValueError("recipe.layers 'last': the model has no linear layer")
    prefix = linear[-1]
    return [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[0] == prefix]


def _linear_layers(model: nn.Module) -> list[str]:
    """The module names of every ``nn.Linear``: where a LoRA recipe adds its low-rank factors."""
    from torch import nn

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("recipe.layers 'lora': the model has no linear layer")
    return names


def _batch_plan(masks: np.ndarray, ordinary: int, seeds: Sequence[int], recipe: Recipe) -> np.ndarray:
    """Indices into canaries + ordinary data, shape (k, steps, batch): shuffled epochs over each copy's set.

    With a ``canary_share`` (and ordinary data), each batch takes that share from the member
    canaries and the rest from the ordinary data, each stream in its own shuffled epochs.
    """
    canaries = masks.shape[1]
    plan = np.empty((len(seeds), recipe.steps, recipe.batch_size), dtype=np.int64)
    split = round(recipe.canary_share * recipe.batch_size) if ordinary and recipe.canary_share else 0
    for row, (mask, seed) in enumerate(zip(masks, seeds, strict=True)):
        rng = np.random.default_rng(seed)
        members, rest = np.flatnonzero(mask), canaries + np.arange(ordinary)
        if split:
            plan[row, :, :split] = _epochs(rng, members, recipe.steps, split)
            plan[row, :, split:] = _epochs(rng, rest, recipe.steps, recipe.batch_size - split)
        else:
            plan[row] = _epochs(rng, np.concatenate([members, rest]), recipe.steps, recipe.batch_size)
    return plan


def _epochs(rng: np.random.Generator, pool: np.ndarray, steps: int, per_step: int) -> np.ndarray:
    """``steps`` x ``per_step`` indices: ``pool`` shuffled again each time it is used up."""
    if not len(pool):
        raise ValueError("fine-tuning set is empty (no member canaries or no ordinary data)")
    need = steps * per_step
    epochs = -(-need // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(epochs)])[:need].reshape(steps, per_step)


__all__ = ["CANARY_KINDS", "CanarySplit", "ClassifierCanaryTrainer", "Recipe", "make_image_canaries"]
