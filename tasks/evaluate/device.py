"""Where evaluations run: CUDA when present, else the CPU, and a record of it for the evidence."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

CHOICES = ("auto", "cpu", "cuda")


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is an error."""
    import torch

    choice = (preference or "auto").strip().lower()
    if choice not in CHOICES and not choice.startswith("cuda:"):
        raise ValueError(f"device: expected one of {', '.join(CHOICES)} or cuda:N, got {preference!r}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {preference!r} requested but torch sees no CUDA device")
    return torch.device(choice)


def describe_device(device: torch.device) -> dict[str, str]:
    """What ran the evaluation, for ``StageEvidence.tools``/``details`` (an auditor compares runs by it)."""
    import torch

    info = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cuda"] = str(torch.version.cuda)
    else:
        info["device_name"] = platform.processor() or platform.machine()
        info["cpu_threads"] = str(torch.get_num_threads())
    return info


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no weight gradients while an evaluation differentiates w.r.t. inputs only; restore both."""
    flags = [p.requires_grad for p in model.parameters()]
    training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(training)
