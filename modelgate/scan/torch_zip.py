"""PyTorch ZIP specifics: which members are tensor storage, and TorchScript code members.

``torch.load`` reads a tensor's bytes from ``<dir>/<archive>/<key>`` where the key
comes from a persistent id in ``<dir>/<archive>.pkl``. Knowing those members lets
the scanner treat them as raw numbers (probed, not parsed) instead of guessing by name.
"""

from __future__ import annotations

import posixpath

from modelgate.scan import zipwalk
from modelgate.scan.base import Limits, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.pickle_scan import Data, walk

_MAX_LISTED = 5


def storage_members(data: Data, directory: zipwalk.ZipDirectory, limits: Limits) -> set[str]:
    """Names of members that the archive's pickles declare as tensor storage."""
    names = {entry.name for entry in directory.entries}
    storages: set[str] = set()
    for entry in directory.entries:
        if not entry.name.endswith(".pkl") or entry.usize > limits.max_member_bytes:
            continue
        payload = zipwalk.read_member(data, entry, zipwalk.ZipDirectory())  # issues are reported by the main pass
        if payload is None:
            continue
        result = walk(payload, 0, max_ops=limits.max_pickle_ops)
        folder = posixpath.join(posixpath.dirname(entry.name), posixpath.basename(entry.name)[: -len(".pkl")])
        for pid in result.persistent_ids:
            if isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[2], str):
                member = f"{folder}/{pid[2]}"
                if member in names:
                    storages.add(member)
    return storages


def code_members(names: list[str]) -> list[str]:
    """Members under a top-level ``code/`` folder (``<archive>/code/...``): TorchScript source."""
    found = []
    for name in names:
        parts = name.split("/")
        if "code" in parts[:2] and parts[-1] and parts.index("code") < len(parts) - 1:
            found.append(name)
    return found


def report_code(code: list[str], ctx: ScanContext) -> None:
    """TorchScript is code: one finding per archive, naming the first code members."""
    shown = ", ".join(code[:_MAX_LISTED]) + (f" and {len(code) - _MAX_LISTED} more" if len(code) > _MAX_LISTED else "")
    ctx.child(code[0]).add(
        "torchscript.code",
        Category.CODE,
        Severity.HIGH,
        f"TorchScript archive carries {len(code)} code members that run when the model is loaded: {shown}",
    )
