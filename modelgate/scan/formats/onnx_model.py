"""ONNX models: external-data locations and custom operator domains.

An ONNX model carries no Python code, but a tensor's external data ``location``
is a file path the runtime opens: an absolute path or one that climbs out of the
model folder reads arbitrary files (``../../etc/passwd``) into the weights. The
model is parsed from bytes without touching external data; ONNX has no magic, so
detection checks that the first protobuf fields are the ones a ModelProto starts with.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.protobuf_wire import varint

NAME = "onnx"
STANDARD_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.microsoft",
        "com.microsoft.nchwc",
    }
)
# ModelProto field number -> wire type (0 varint, 2 length-delimited)
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_STRING_FIELDS = frozenset({2, 3, 4})  # producer_name, producer_version, domain
_MAX_PROTO = 2**31 - 1
_DRIVE = re.compile(r"^[A-Za-z]:")
_EXTERNAL = 1  # TensorProto.EXTERNAL




def _plain_text(raw: bytes) -> bool:
    """producer_name / producer_version / domain: printable UTF-8 (a cut-off tail is fine)."""
    text = raw.decode("utf-8", "ignore")
    return not any(ord(ch) < 0x20 for ch in text)


def detect(head: bytes) -> bool:
    """A ModelProto starts with ir_version (field 1), then known fields with the right wire types."""
    if head[:1] != b"\x08":
        return False
    fields = 0
    try:
        ir_version, pos = varint(head, 1)
        if not 1 <= ir_version <= 32:
            return False
        fields = 1
        while pos < len(head):
            tag, pos = varint(head, pos)
            number, wire = tag >> 3, tag & 7
            if _MODEL_FIELDS.get(number) != wire:
                return False
            fields += 1
            if wire == 0:
                _, pos = varint(head, pos)
            else:
                length, pos = varint(head, pos)
                if number in _STRING_FIELDS and not _plain_text(head[pos : pos + length]):
                    return False  # e.g. a SavedModel: field 2 there is a MetaGraphDef message
                pos += length
        return fields >= 2
    except ValueError:
        return fields >= 3


def _graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(model: Any) -> Iterator[Any]:
    graphs = list(_graphs(model.graph))
    for info in model.training_info:
        graphs += list(_graphs(info.initialization)) + list(_graphs(info.algorithm))
    nodes = [node for g in graphs for node in g.node] + [node for f in model.functions for node in f.node]
    for g in graphs:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices


def _domains(model: Any) -> set[str]:
    local = {f.domain for f in model.functions}
    used = {op.domain for op in model.opset_import}
    used |= {node.domain for g in _graphs(model.graph) for node in g.node}
    return {d for d in used if d not in STANDARD_DOMAINS and d not in local}


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_external(tensor: Any, ctx: ScanContext) -> None:
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    name = tensor.name or "<unnamed>"
    if not location:
        ctx.add("onnx.external-data-missing", Category.MALFORMED, Severity.MEDIUM, f"tensor {name!r}: no location")
        return
    root = Path(os.path.normpath(os.path.abspath(ctx.root)))
    base = (root / ctx.file).parent
    target = Path(os.path.normpath(base / location))
    if os.path.isabs(location) or location.startswith(("\\", "~")) or _DRIVE.match(location):
        ctx.add(
            "onnx.external-data-escape",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"tensor {name!r} reads external data from the absolute path {location!r}",
        )
        return
    if not _inside(target, root) or (target.exists() and not _inside(target.resolve(), root.resolve())):
        ctx.add(
            "onnx.external-data-escape",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"tensor {name!r} reads external data from {location!r}, outside the model folder",
        )
        return
    if not target.is_file():
        ctx.add(
            "onnx.external-data-missing",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"tensor {name!r}: external data file {location!r} does not exist",
        )
        return
    try:
        offset, length = int(entries.get("offset", "0")), int(entries.get("length", "-1"))
    except ValueError:
        offset, length = -1, -1
    size = target.stat().st_size
    if offset < 0 or offset > size or (length >= 0 and offset + length > size):
        ctx.add(
            "onnx.external-data-range",
            Category.MALFORMED,
            Severity.MEDIUM,
            f"tensor {name!r}: offset {entries.get('offset')} / length {entries.get('length')} "
            f"outside {location!r} ({size} bytes)",
        )
        return
    if ctx.member is None:  # a file of the scanned folder, read by onnx as raw tensor bytes
        ctx.references.append((target.relative_to(root).as_posix(), "onnx-external-data"))


def scan(data: Data, ctx: ScanContext) -> None:
    if len(data) > _MAX_PROTO:
        ctx.add("onnx.size-limit", Category.LIMIT, Severity.MEDIUM, "ONNX protobuf larger than 2 GiB cannot be parsed")
        return
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(bytes(data))
    except (DecodeError, ValueError, RuntimeError) as exc:
        ctx.add("onnx.malformed", Category.MALFORMED, Severity.MEDIUM, f"ONNX protobuf does not parse: {exc}")
        return
    for tensor in _tensors(model):
        if tensor.data_location == _EXTERNAL:
            _check_external(tensor, ctx)
    for domain in sorted(_domains(model)):
        ctx.add(
            "onnx.custom-domain",
            Category.INFO,
            Severity.INFO,
            f"operators from the custom domain {domain!r} need a native library registered at run time",
        )
