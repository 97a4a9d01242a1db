"""Membership data: labelled records plus which of them the model was trained on.

A membership attack is only measurable against ground truth, so the evaluation data must say which
records were training members. Two sources say so: the built-in ``sklearn:digits`` (the demo's
training split, seed 0, are the members; its held-out split the non-members) and an ``.npz`` with
``x``, ``y`` and a boolean ``member`` array (a parquet file with a ``member`` column works the same
way). Data that does not say (a folder of images, an ``.npz`` without ``member``) is refused with
:class:`NotEvaluable`, which the stage records as ``skipped``; data that says so but is broken is an
:class:`EvalDataError` (one line), like every other evaluation data problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelgate.evidence import sha256_bytes
from tasks.evaluate.adapters import NotEvaluable
from tasks.evaluate.data import BUILTINS, EvalDataError, load_eval_data

if TYPE_CHECKING:
    import torch

NO_MEMBERSHIP = "the evaluation data does not say which records were training members"
MEMBER_KEY = "member"
MIN_PER_SIDE = 10  # fewer members or non-members make every figure noise


@dataclass(frozen=True)
class MembershipData:
    """Records ``x`` (N, C, H, W) in [0, 1], labels ``y`` (N) and ``member`` (N, bool)."""

    x: torch.Tensor
    y: torch.Tensor
    member: torch.Tensor
    num_classes: int
    source: str
    label_names: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)

    def subset(self, index: torch.Tensor) -> MembershipData:
        """The records at ``index`` (in that order), with the summary noting the subset size."""
        summary = {**self.summary, "subset_records": len(index)}
        return MembershipData(
            self.x[index], self.y[index], self.member[index], self.num_classes, self.source, self.label_names, summary
        )


def load_membership_data(
    ref: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    label_names: Sequence[str] | None = None,
) -> MembershipData:
    """Load ``ref`` with its membership labels; NotEvaluable when the data has none, EvalDataError when broken."""
    import torch

    ref = ref.strip()
    shape = tuple(int(s) for s in input_shape)
    if ref in BUILTINS:
        x_np, y_np, member_np, fmt = *_digits(shape), "builtin"
        names = tuple(label_names or (str(d) for d in range(10)))
    else:
        member_np = _read_membership(ref)
        data = load_eval_data(ref, input_shape=shape, num_classes=num_classes, label_names=label_names)
        x_np, y_np, fmt, names = data.x.numpy(), data.y.numpy(), data.format, data.label_names
        if len(member_np) != len(y_np):
            raise EvalDataError(f"eval data {ref}: {len(member_np)} membership labels for {len(y_np)} records")
    _validate(ref, x_np, y_np, member_np, shape, num_classes)
    names = names if len(names) == num_classes else tuple(str(c) for c in range(num_classes))
    return MembershipData(
        torch.from_numpy(np.ascontiguousarray(x_np, np.float32)),
        torch.from_numpy(np.ascontiguousarray(y_np, np.int64)),
        torch.from_numpy(member_np.copy()),
        num_classes,
        ref,
        names,
        _summary(ref, fmt, x_np, y_np, member_np),
    )


def _digits(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo's digits at the model's side and channels: training split (seed 0) first, then held-out."""
    from modelgate.demo.build import digits_dataset

    split = digits_dataset(seed=0, side=shape[1])
    x = np.concatenate([split.train_x.numpy(), split.test_x.numpy()])
    y = np.concatenate([split.train_y.numpy(), split.test_y.numpy()])
    member = np.r_[np.ones(len(split.train_y), bool), np.zeros(len(split.test_y), bool)]
    return (np.repeat(x, shape[0], axis=1) if shape[0] > 1 else x), y, member


def _read_membership(ref: str) -> np.ndarray:
    """The ``member`` column of an .npz or parquet file, read before the images; refuse when there is none."""
    path = Path(ref.removeprefix("file://")).expanduser()
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                if MEMBER_KEY not in archive:
                    raise NotEvaluable(f"{NO_MEMBERSHIP} (the .npz has no '{MEMBER_KEY}' array)")
                member = archive[MEMBER_KEY]
        except ValueError as exc:
            raise EvalDataError(f"eval data {ref}: unreadable .npz ({exc})") from None
        return _as_bool(ref, member)
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        if MEMBER_KEY not in pq.read_schema(path).names:
            raise NotEvaluable(f"{NO_MEMBERSHIP} (the parquet file has no '{MEMBER_KEY}' column)")
        return _as_bool(ref, np.asarray(pq.read_table(path, columns=[MEMBER_KEY]).column(0).to_pylist()))
    if path.is_dir():
        raise NotEvaluable(f"{NO_MEMBERSHIP} (a folder has no membership labels; use an .npz with '{MEMBER_KEY}')")
    if not path.exists():
        raise EvalDataError(f"eval data {ref}: not found (use an .npz or .parquet with '{MEMBER_KEY}')")
    raise NotEvaluable(f"{NO_MEMBERSHIP} ({path.suffix or 'this file'} carries no membership labels)")


def _as_bool(ref: str, member: np.ndarray) -> np.ndarray:
    """Booleans, or integers that are all 0/1; anything else is an error, never a guess."""
    if member.ndim != 1:
        raise EvalDataError(f"eval data {ref}: '{MEMBER_KEY}' must be 1-D, got shape {member.shape}")
    if member.dtype == bool:
        return member
    if np.issubdtype(member.dtype, np.integer) and np.isin(member, (0, 1)).all():
        return member.astype(bool)
    raise EvalDataError(f"eval data {ref}: '{MEMBER_KEY}' must hold booleans or 0/1, got {member.dtype}")


def _validate(ref: str, x: np.ndarray, y: np.ndarray, member: np.ndarray, shape: tuple[int, ...], classes: int) -> None:
    """Shape and range were checked by load_eval_data for files; membership needs both sides, enough of each."""
    if tuple(x.shape[1:]) != shape:
        raise EvalDataError(f"eval data {ref}: images are {list(x.shape[1:])}, the model expects {list(shape)}")
    if y.min() < 0 or y.max() >= classes:
        raise EvalDataError(f"eval data {ref}: labels must be in 0..{classes - 1}")
    members, non_members = int(member.sum()), int((~member).sum())
    if min(members, non_members) < MIN_PER_SIDE:
        raise EvalDataError(
            f"eval data {ref}: {members} members and {non_members} non-members; "
            f"at least {MIN_PER_SIDE} of each are needed"
        )


def _summary(ref: str, fmt: str, x: np.ndarray, y: np.ndarray, member: np.ndarray) -> dict[str, Any]:
    digest = sha256_bytes(
        np.ascontiguousarray(x, np.float32).tobytes() + y.astype(np.int64).tobytes() + member.astype(np.uint8).tobytes()
    )
    return {
        "source": ref,
        "format": fmt,
        "samples": len(y),
        "members": int(member.sum()),
        "non_members": int((~member).sum()),
        "shape": [int(s) for s in x.shape[1:]],
        "digest": digest,
    }


__all__ = ["NO_MEMBERSHIP", "MembershipData", "load_membership_data"]
