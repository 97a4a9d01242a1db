"""ZIP archives: PyTorch checkpoints, TorchScript, Keras ``.keras``, NumPy ``.npz`` and plain zips.

Every member is re-dispatched by content whatever its name. Members that the
checkpoint's own pickles declare as tensor storage are scanned leniently (they are
raw numbers; only a clean embedded file or a named dangerous global counts there).
The archive kind is a label derived from what the members turned out to be.
"""

from __future__ import annotations

import json
import posixpath

from modelgate.scan import zipwalk
from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "zip"
_PICKLE_KINDS = {"pickle", "pytorch-legacy", "joblib"}


def detect(head: bytes) -> bool:
    """By the head signature; a zip found only from its end record is routed by ``formats.detect``."""
    return head[:4] in (zipwalk.LFH_SIG, zipwalk.EOCD_SIG)


def scan(data: Data, ctx: ScanContext) -> None:
    from modelgate.scan import torch_zip  # the pickle machinery, only for a zip

    directory = zipwalk.read_directory(data, ctx.limits)
    reported = _report(directory, 0, ctx)
    if not directory.ok:
        return
    if directory.lead_len:
        _scan_prefix(data[: directory.lead_len], ctx)
    storages = torch_zip.storage_members(data, directory, ctx.limits)
    formats: dict[str, str] = {}
    keras_config_bytes: bytes | None = None
    for entry in directory.entries:
        if entry.is_dir:
            continue
        storage = entry.name in storages
        payload = zipwalk.read_member(data, entry, directory, verify_crc=not storage or ctx.limits.verify_storage_crc)
        reported = _report(directory, reported, ctx)
        if payload is None:
            continue
        formats[entry.name] = ctx.scan_nested(payload, entry.name, lenient=storage)
        if entry.name == "config.json" and len(payload) <= ctx.limits.max_header_bytes:
            keras_config_bytes = bytes(payload)
    ctx.format = _kind(formats, ctx)
    if keras_config_bytes is not None and _check_keras(keras_config_bytes, ctx):
        ctx.format = "keras"


def _scan_prefix(prefix: Data, ctx: ScanContext) -> None:
    """Bytes before the archive are what head-first loaders (torch, pickle, numpy) read: scan them too."""
    kind = ctx.scan_nested(prefix, "<prefix>")
    if kind in _PICKLE_KINDS:
        ctx.add(
            "pickle.polyglot",
            Category.MALFORMED,
            Severity.MEDIUM,
            "the file is both a pickle and a ZIP archive: different loaders see different content",
        )


def _report(directory: zipwalk.ZipDirectory, start: int, ctx: ScanContext) -> int:
    """Add the directory's issues from ``start`` on to ``ctx``; returns how many are reported."""
    for issue in directory.issues[start:]:
        target = ctx.child(issue.member) if issue.member else ctx
        target.add(issue.rule_id, issue.category, issue.severity, issue.message, offset=issue.offset)
    return len(directory.issues)


def _kind(formats: dict[str, str], ctx: ScanContext) -> str:
    from modelgate.scan import torch_zip

    names = list(formats)
    code = torch_zip.code_members(names)
    if code:
        torch_zip.report_code(code, ctx)
        return "torchscript"
    if any(posixpath.basename(n) == "data.pkl" and formats[n] == "pickle" for n in names):
        return "pytorch-zip"
    if names and all(fmt == "numpy" for fmt in formats.values()):
        return "npz"
    return "zip"


def _check_keras(raw: bytes, ctx: ScanContext) -> bool:
    from modelgate.scan import keras_config

    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not (isinstance(config, dict) and "class_name" in config):
        return False
    keras_config.check(config, ctx.child("config.json"))
    return True
