"""TensorFlow files built by hand, byte for byte as TensorFlow writes them, for the scanner tests.

SavedModel graphs (``saved_model``: the protobuf of saved_model.pb, from nodes and library functions;
``serving``: the serving, save and restore functions TensorFlow 2 writes; ``benign_saved_model``)
reach every path-flow case of the op check (tests/test_scan_code_configs.py); the real ones, built,
loaded and run by TensorFlow 2.21, are in tests/test_scan_saved_model_live.py. ``write_bundle``
writes a tensor bundle (a checkpoint's .index LevelDB table and its one data shard), checked there
against TensorFlow reading it back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelgate.scan.formats import tf_bundle

# --------------------------------------------------------------------------- protobuf and GraphDef


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def node_attr(key: str, value: bytes) -> bytes:
    """A NodeDef.attr map entry {1: key, 2: AttrValue}."""
    return field(5, field(1, key) + field(2, value))


def node(name: str, op: str, *inputs: str, attrs: bytes = b"") -> bytes:
    return field(1, name) + field(2, op) + b"".join(field(3, i) for i in inputs) + attrs


def const_node(name: str, *strings: str) -> bytes:
    """A string Const: AttrValue{8: TensorProto{1: DT_STRING, 8: string_val}}."""
    tensor = varint(1 << 3) + varint(7) + b"".join(field(8, s) for s in strings)
    return node(name, "Const", attrs=node_attr("value", field(8, tensor)))


def call_node(name: str, function: str, *inputs: str, op: str = "StatefulPartitionedCall", attr: str = "f") -> bytes:
    """A node calling a library function through a func attribute (AttrValue{10: NameAttrList{1: name}})."""
    return node(name, op, *inputs, attrs=node_attr(attr, field(10, field(1, function))))


def graph_function(name: str, nodes: list[bytes], args: tuple[str, ...] = ()) -> bytes:
    signature = field(1, name) + b"".join(field(2, field(1, a)) for a in args)
    return field(1, signature) + b"".join(field(3, n) for n in nodes)


def object_graph(objects: list[bytes], bound: dict[str, list[int]]) -> bytes:
    """MetaGraphDef.object_graph_def: SavedObjects and each concrete function's bound inputs."""
    functions = b"".join(
        field(2, field(1, name) + field(2, field(2, b"".join(varint(i) for i in ids)))) for name, ids in bound.items()
    )
    return field(7, b"".join(field(1, o) for o in objects) + functions)


def saved_model(
    nodes: list[bytes],
    functions: list[bytes] = (),  # type: ignore[assignment]
    *,
    assets: tuple[tuple[str, str], ...] = (),
    objects: bytes = b"",
) -> bytes:
    library = field(2, b"".join(field(1, f) for f in functions)) if functions else b""
    graph = b"".join(field(1, n) for n in nodes) + library
    meta_info = field(1, "") + field(4, "serve") + field(5, "2.15.0")
    saver_def = field(3, field(1, "saver_filename:0"))
    asset_defs = b"".join(field(6, field(1, field(1, tensor)) + field(2, name)) for tensor, name in assets)
    meta = field(1, meta_info) + field(2, graph) + saver_def + asset_defs + objects
    return b"\x08\x01" + field(2, meta)


def saver_nodes() -> list[bytes]:
    """A saver in the main graph itself (TensorFlow 1 style), fed the checkpoint prefix."""
    return [
        node("saver_filename", "Placeholder"),
        const_node("Const", "_temp/part"),
        node("StringJoin", "StringJoin", "saver_filename", "Const"),
        node("num_shards", "Const"),
        node("ShardedFilename", "ShardedFilename", "StringJoin", "num_shards", "num_shards"),
        node("SaveV2", "SaveV2", "ShardedFilename", "tensor_names", "shape_and_slices", "^NoOp"),
        node("MergeV2Checkpoints", "MergeV2Checkpoints", "ShardedFilename:0", "saver_filename"),
        node("RestoreV2", "RestoreV2", "saver_filename", "tensor_names", "shape_and_slices"),
        node("NoOp", "NoOp"),
    ]


def save_function(name: str = "__inference__traced_save_203", suffix: str = "_temp/part") -> bytes:
    """The save function TensorFlow 2 writes: prefix + '_temp/part' (or '.part' on s3), sharded, merged."""
    return graph_function(
        name,
        [
            node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
            const_node("Const", ".part"),
            const_node("Const_1", suffix),
            node("Select", "Select", "StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"),
            node("StringJoin", "StringJoin", "file_prefix", "Select:output:0"),
            node("Read/DisableCopyOnRead", "DisableCopyOnRead", "var"),
            node("Read/ReadVariableOp", "ReadVariableOp", "var", "^Read/DisableCopyOnRead"),
            node("num_shards", "Const"),
            node("ShardedFilename/shard", "Const"),
            node("ShardedFilename", "ShardedFilename", "StringJoin:output:0", "ShardedFilename/shard:output:0"),
            node("SaveV2", "SaveV2", "ShardedFilename:filename:0", "names", "slices", "Read/ReadVariableOp:value:0"),
            node("MergeV2Checkpoints/checkpoint_prefixes", "Pack", "ShardedFilename:filename:0", "^SaveV2"),
            node(
                "MergeV2Checkpoints",
                "MergeV2Checkpoints",
                "MergeV2Checkpoints/checkpoint_prefixes:output:0",
                "file_prefix",
            ),
            node("Identity", "Identity", "file_prefix", "^MergeV2Checkpoints"),
        ],
        ("file_prefix", "var"),
    )


def serving() -> tuple[list[bytes], list[bytes]]:
    nodes = [
        node("serving_default_x", "Placeholder"),
        node("dense/kernel", "VarHandleOp"),
        call_node("StatefulPartitionedCall", "__inference_serving_default_101", "serving_default_x", "dense/kernel"),
        node("saver_filename", "Placeholder"),
        call_node("StatefulPartitionedCall_1", "__inference__traced_save_203", "saver_filename", "dense/kernel"),
        call_node("StatefulPartitionedCall_2", "__inference__traced_restore_202", "saver_filename", "dense/kernel"),
    ]
    body = [
        node("MatMul/ReadVariableOp", "ReadVariableOp", "kernel"),
        node("MatMul", "MatMul", "x", "MatMul/ReadVariableOp:value:0"),
        node("BiasAdd", "BiasAdd", "MatMul:product:0", "MatMul/ReadVariableOp:value:0"),
        node("Relu", "Relu", "BiasAdd:output:0"),
        node("Identity", "Identity", "Relu:activations:0"),
    ]
    restore = [
        node("RestoreV2", "RestoreV2", "file_prefix", "names", "slices"),
        node("AssignVariableOp", "AssignVariableOp", "var", "RestoreV2:tensors:0"),
    ]
    functions = [
        graph_function("__inference_serving_default_101", body, ("x", "kernel")),
        graph_function("__inference__traced_restore_202", restore, ("file_prefix", "var")),
        save_function(),
    ]
    return nodes, functions


def benign_saved_model() -> bytes:
    nodes, functions = serving()
    return saved_model(nodes + saver_nodes(), functions)


# --------------------------------------------------------------------------- a tensor bundle


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


HEADER = varint_field(1, 1) + field(3, varint_field(1, 1))  # BundleHeaderProto{num_shards: 1, version{producer: 1}}
_DTYPES = {np.float32: 1, np.float64: 2, np.int32: 3, np.uint8: 4, np.int64: 9, np.bool_: 10, np.float16: 19}
# name -> (TensorFlow's dtype name, value): what TensorFlow must read back from write_bundle()
TF_NAMES: dict[str, tuple[str, np.ndarray]] = {
    "dense/bias": ("float32", np.arange(3, dtype=np.float32)),
    "dense/kernel": ("float32", np.arange(12, dtype=np.float32).reshape(3, 4) / 7),
    "embedding/ids": ("int64", np.array([[1, 2], [3, 4]], dtype=np.int64)),
    "flags": ("bool", np.array([True, False])),
    "global_step": ("int32", np.array(7, dtype=np.int32)),
    "half": ("float16", np.array([0.5, 1.5], dtype=np.float16)),
}
TENSORS = {name: array for name, (_dtype, array) in TF_NAMES.items()}


def bundle_entry(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int, shard: int = 0) -> bytes:
    """BundleEntryProto{1: dtype, 2: shape, 3: shard_id, 4: offset, 5: size, 6: crc32c (fixed32)}."""
    shape_proto = b"".join(field(2, varint_field(1, d)) for d in shape)
    shard_field = varint_field(3, shard) if shard else b""
    return (
        varint_field(1, dtype)
        + field(2, shape_proto)
        + shard_field
        + varint_field(4, offset)
        + varint_field(5, size)
        + b"\x35"
        + struct.pack("<I", crc)
    )


def bundle_entries(tensors: dict[str, np.ndarray]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Sorted (key, BundleEntryProto) pairs, header first, and the one shard they index."""
    entries, shard = [(b"", HEADER)], bytearray()
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        dtype = _DTYPES[tensors[name].dtype.type]
        entry = bundle_entry(dtype, tensors[name].shape, len(shard), len(raw), tf_bundle.masked_crc32c(raw))
        entries.append((name.encode(), entry))
        shard += raw
    return entries, bytes(shard)


def _block(entries: list[tuple[bytes, bytes]], restart_every: int = 2) -> bytes:
    """A LevelDB block: prefix-compressed entries, the restart array, the restart count."""
    out, restarts, previous = bytearray(), [], b""
    for n, (key, value) in enumerate(entries):
        shared = 0
        if n % restart_every:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def bundle_index(entries: list[tuple[bytes, bytes]], per_block: int = 3, compression: int = 0) -> bytes:
    """A LevelDB table as TensorFlow's writer lays it out: data blocks, metaindex, index, footer."""
    out, index = bytearray(), []

    def put(block: bytes) -> tuple[int, int]:
        handle = (len(out), len(block))
        out.extend(
            block + bytes([compression]) + struct.pack("<I", tf_bundle.masked_crc32c(block + bytes([compression])))
        )
        return handle

    for start in range(0, len(entries), per_block):
        chunk = entries[start : start + per_block]
        offset, size = put(_block(chunk))
        index.append((chunk[-1][0], varint(offset) + varint(size)))
    meta = put(_block([]))
    top = put(_block(index, restart_every=1))
    footer = b"".join(varint(v) for v in (*meta, *top))
    return bytes(out) + footer.ljust(40, b"\x00") + tf_bundle.MAGIC


def write_bundle(
    folder: Path,
    prefix: str,
    tensors: dict[str, np.ndarray],
    edit: Callable[[list[tuple[bytes, bytes]]], None] | None = None,
    **table: int,
) -> Path:
    entries, shard = bundle_entries(tensors)
    if edit is not None:
        edit(entries)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}.index").write_bytes(bundle_index(entries, **table))
    (folder / f"{prefix}.data-00000-of-00001").write_bytes(shard)
    return folder
