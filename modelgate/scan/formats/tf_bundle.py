"""TensorFlow tensor bundles (``variables/variables.index``, ``model.ckpt.index``): the index read to the last byte.

A SavedModel's variables, and every TF2 checkpoint, are a tensor bundle: an index (a LevelDB
table: data blocks of prefix-compressed keys with a restart array, each block followed by a
compression byte and a masked CRC32C, a metaindex block, an index block and a 48-byte footer
ending in the table magic) and raw data shards ``<prefix>.data-NNNNN-of-MMMMM``. TensorFlow's
``BundleReader`` looks each tensor up through the index and reads its bytes from the shard it
names. The index is parsed here as the reader parses it, strictly and without TensorFlow: every
block handle in bounds and the blocks tiling the file, CRC32C of every block, keys strictly
increasing (so a lookup finds exactly the entry read here), the header entry (key ``""``) a
``BundleHeaderProto``, every other entry a ``BundleEntryProto`` whose bytes lie inside the shard
it names. The shards the header names must all be there (and no other shard of the prefix);
they are then references: raw numbers to this reader (the driver still detects them by content
first, so a pickle hidden there keeps its own verdict). ``DT_VARIANT`` (decoded by registered C++
decoders) and ``DT_RESOURCE`` entries are ``unknown``. Shard bytes are never CRC-checked (gigabytes).
"""

from __future__ import annotations

import math
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.protobuf_wire import varint

NAME = "tf-bundle"
DATA_LABEL = "tf-bundle-data"
MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_FOOTER = 48  # two block handles (at most 2 x 2 x 10 bytes), zero padding, the magic
_TRAILER = 5  # compression type byte + masked CRC32C of the contents and that byte
_NO_COMPRESSION = 0
_MAX_SHARDS = 99_999  # TensorFlow names shards with %05d
_MAX_RANK = 254
_MAX_SHARD_FINDINGS = 20
_INT64 = 1 << 63

# DataType -> bytes per element, for the dtypes whose bundle entry is exactly elements x size.
ITEM_SIZES = {
    1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2,
    16: 2, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8, 24: 1, 25: 1, 26: 1, 27: 1, 28: 1,
}  # fmt: skip
DT_STRING, DT_RESOURCE, DT_VARIANT = 7, 20, 21
# Sub-byte types (int4, uint4, int2, uint2, float4): data, but their packing is not modelled here.
_PACKED = frozenset({29, 30, 31, 32, 33})


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: Data) -> int:
    """CRC-32C (Castagnoli), table-driven in pure Python: fine for index blocks (kilobytes)."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: Data) -> int:
    """LevelDB's masked CRC (a CRC stored next to the data it covers is rotated and offset)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Bad(ValueError):
    """The index does not read as TensorFlow reads it."""


class Unsupported(ValueError):
    """Well-formed, but holds something this reader does not decode (a compressed block)."""


@dataclass(frozen=True)
class Header:
    num_shards: int
    endianness: int


@dataclass(frozen=True)
class Entry:
    key: bytes
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    slices: int


# --------------------------------------------------------------------------- protobuf, strictly


def _fields(buf: Data, where: str) -> Iterator[tuple[int, int, int | Data]]:
    """(number, wire type, value) of a protobuf message; fixed32 comes as its integer value."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise Bad(f"{where}: field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, where)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if length > len(buf) - pos:
                raise Bad(f"{where}: field {number} runs past the end")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise Bad(f"{where}: truncated fixed32 field {number}")
            yield number, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise Bad(f"{where}: wire type {wire} (field {number}) is not used by this message")


def _varint(buf: Data, pos: int, where: str) -> tuple[int, int]:
    try:
        return varint(buf, pos)
    except ValueError as exc:
        raise Bad(f"{where}: {exc}") from None


def read_message(buf: Data, where: str, schema: dict[int, tuple[int, bool]]) -> dict[int, list[int | Data]]:
    """The fields of ``buf`` by number; ``schema``: number -> (wire type, repeated). Unknown fields,
    wrong wire types and a repeated singular field are errors: TensorFlow never writes them."""
    found: dict[int, list[int | Data]] = {}
    for number, wire, value in _fields(buf, where):
        expected = schema.get(number)
        if expected is None:
            raise Bad(f"{where}: unexpected field {number}")
        want, repeated = expected
        if wire != want and not (repeated and want == 0 and wire == 2):
            raise Bad(f"{where}: field {number} has wire type {wire}, not {want}")
        if number in found and not repeated:
            raise Bad(f"{where}: field {number} appears twice")
        if repeated and want == 0 and wire == 2 and not isinstance(value, int):  # packed varints
            found.setdefault(number, []).extend(_packed(value, where))
        else:
            found.setdefault(number, []).append(value)
    return found


def _packed(buf: Data, where: str) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos, where)
        values.append(value)
    return values


def _int(found: dict[int, list[int | Data]], number: int, default: int = 0) -> int:
    value = found.get(number, [default])[-1]
    assert isinstance(value, int)
    return value


def _signed(value: int, bits: int = 64) -> int:
    """A varint as protobuf's int32/int64 read it (negatives are 10-byte two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= _INT64 else value if bits == 64 else _int32(value)


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


VERSION_DEF = {1: (0, False), 2: (0, False), 3: (0, True)}
_HEADER = {1: (0, False), 2: (0, False), 3: (2, False)}
_ENTRY = {1: (0, False), 2: (2, False), 3: (0, False), 4: (0, False), 5: (0, False), 6: (5, False), 7: (2, True)}
_SHAPE = {2: (2, True), 3: (0, False)}
_DIM = {1: (0, False), 2: (2, False)}
_SLICE = {1: (2, True)}
_EXTENT = {1: (0, False), 2: (0, False)}


def parse_header(buf: Data) -> Header:
    """BundleHeaderProto{1: num_shards, 2: endianness, 3: VersionDef}."""
    found = read_message(buf, "bundle header", _HEADER)
    num_shards = _signed(_int(found, 1), 32)
    endianness = _int(found, 2)
    if not 1 <= num_shards <= _MAX_SHARDS:
        raise Bad(f"bundle header: num_shards {num_shards} is not 1..{_MAX_SHARDS}")
    if endianness not in (0, 1):
        raise Bad(f"bundle header: endianness {endianness} is neither LITTLE nor BIG")
    for version in found.get(3, []):
        assert not isinstance(version, int)
        read_message(version, "bundle header version", VERSION_DEF)
    return Header(num_shards, endianness)


def parse_entry(key: bytes, buf: Data) -> Entry:
    """BundleEntryProto{1: dtype, 2: shape, 3: shard_id, 4: offset, 5: size, 6: crc32c, 7: slices}."""
    where = f"entry {key[:80]!r}"
    found = read_message(buf, where, _ENTRY)
    dtype = _int(found, 1)
    shape = _shape(found.get(2, [b""])[-1], where)
    shard, offset, size = _signed(_int(found, 3), 32), _signed(_int(found, 4)), _signed(_int(found, 5))
    if shard < 0 or offset < 0 or size < 0:
        raise Bad(f"{where}: negative shard_id, offset or size")
    slices = found.get(7, [])
    for extent_list in slices:
        assert not isinstance(extent_list, int)
        for extent in read_message(extent_list, where + " slice", _SLICE).get(1, []):
            assert not isinstance(extent, int)
            read_message(extent, where + " slice extent", _EXTENT)
    return Entry(key, dtype, shape, shard, offset, size, len(slices))


def _shape(buf: int | Data, where: str) -> tuple[int, ...]:
    assert not isinstance(buf, int)
    found = read_message(buf, where + " shape", _SHAPE)
    if _int(found, 3):
        raise Bad(f"{where}: a saved tensor has an unknown rank")
    dims = []
    for dim in found.get(2, []):
        assert not isinstance(dim, int)
        size = _signed(_int(read_message(dim, where + " dim", _DIM), 1))
        if size < 0:
            raise Bad(f"{where}: dimension {size}")
        dims.append(size)
    if len(dims) > _MAX_RANK:
        raise Bad(f"{where}: rank {len(dims)} is above {_MAX_RANK}")
    return tuple(dims)


# --------------------------------------------------------------------------- the LevelDB table


def _encode(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def _handle(buf: Data, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return offset, size, pos


def block_entries(contents: Data, where: str) -> list[tuple[bytes, Data]]:
    """The (key, value) pairs of one block: entries to the restart array, which must point at
    entries that share no prefix (restart 0 first), then the restart count."""
    if len(contents) < 4:
        raise Bad(f"{where}: {len(contents)} bytes is too short for a block")
    count = struct.unpack_from("<I", contents, len(contents) - 4)[0]
    limit = len(contents) - 4 - 4 * count
    if count == 0 or limit < 0:
        raise Bad(f"{where}: {count} restart points do not fit in {len(contents)} bytes")
    restarts = struct.unpack_from(f"<{count}I", contents, limit)
    entries: list[tuple[bytes, Data]] = []
    starts: dict[int, int] = {}  # entry offset -> shared prefix length
    pos, key = 0, b""
    while pos < limit:
        start = pos
        shared, pos = _varint(contents, pos, where)
        unshared, pos = _varint(contents, pos, where)
        length, pos = _varint(contents, pos, where)
        if shared > len(key) or unshared > limit - pos or length > limit - pos - unshared:
            raise Bad(f"{where}: entry at {start} runs past its block")
        key = key[:shared] + bytes(contents[pos : pos + unshared])
        pos += unshared
        entries.append((key, contents[pos : pos + length]))
        pos += length
        starts[start] = shared
    if restarts[0] != 0 or any(b <= a for a, b in zip(restarts, restarts[1:], strict=False)):
        raise Bad(f"{where}: restart points are not increasing from 0")
    if entries and any(starts.get(r) != 0 for r in restarts):
        raise Bad(f"{where}: a restart point is not an entry with a full key")
    if not entries and restarts != (0,):
        raise Bad(f"{where}: an empty block with restart points")
    return entries


def read_block(data: Data, offset: int, size: int, where: str) -> list[tuple[bytes, Data]]:
    """One block at its handle: in bounds, CRC32C over contents and type, no compression."""
    end = offset + size + _TRAILER
    if end > len(data) - _FOOTER:
        raise Bad(f"{where}: block at {offset} (+{size}) runs past the end of the table")
    kind = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if masked_crc32c(data[offset : offset + size + 1]) != stored:
        raise Bad(f"{where}: block at {offset}: CRC32C mismatch")
    if kind != _NO_COMPRESSION:
        raise Unsupported(f"{where}: block at {offset} is compressed (type {kind}), which is not read here")
    return block_entries(data[offset : offset + size], where)


def read_index(data: Data) -> tuple[Header, list[Entry]]:
    """The header and every entry of a bundle index, checked end to end (raises Bad / Unsupported)."""
    if len(data) < _FOOTER + 2 * _TRAILER or bytes(data[-8:]) != MAGIC:
        raise Bad("no LevelDB table footer (magic 0xdb4775248b80fb57) at the end")
    footer = data[len(data) - _FOOTER :]
    meta_offset, meta_size, pos = _handle(footer, 0, "footer")
    index_offset, index_size, pos = _handle(footer, pos, "footer")
    if pos > _FOOTER - 8 or any(footer[pos : _FOOTER - 8]):
        raise Bad("footer: block handles are followed by bytes that are not zero padding")
    if bytes(footer[:pos]) != b"".join(_encode(v) for v in (meta_offset, meta_size, index_offset, index_size)):
        raise Bad("footer: block handles are not written as the table writer writes them (shortest varints)")
    handles = []
    for separator, value in read_block(data, index_offset, index_size, "index block"):
        offset, size, used = _handle(value, 0, "index block")
        if used != len(value):
            raise Bad("index block: a block handle with trailing bytes")
        handles.append((separator, offset, size))
    if read_block(data, meta_offset, meta_size, "metaindex block"):
        raise Bad("metaindex block is not empty (TensorFlow writes no filter or meta block)")
    _check_tiling(handles, (meta_offset, meta_size), (index_offset, index_size), len(data))
    return _entries(data, handles)


def _check_tiling(
    handles: list[tuple[bytes, int, int]], meta: tuple[int, int], index: tuple[int, int], total: int
) -> None:
    """The data blocks, the metaindex and the index block follow each other from byte 0 to the
    footer: the table writer leaves no byte that the reader would not read."""
    pos = 0
    for n, (_key, offset, size) in enumerate(handles):
        if offset != pos:
            raise Bad(f"data block {n} starts at {offset}, not at {pos} where the previous one ends")
        pos = offset + size + _TRAILER
    for name, (offset, size) in (("metaindex", meta), ("index", index)):
        if offset != pos:
            raise Bad(f"{name} block starts at {offset}, not at {pos}")
        pos = offset + size + _TRAILER
    if pos != total - _FOOTER:
        raise Bad(f"{total - _FOOTER - pos} bytes between the index block and the footer")


def _entries(data: Data, handles: list[tuple[bytes, int, int]]) -> tuple[Header, list[Entry]]:
    blocks = [read_block(data, offset, size, f"data block {n}") for n, (_key, offset, size) in enumerate(handles)]
    header: Header | None = None
    entries: list[Entry] = []
    previous: bytes | None = None
    for n, block in enumerate(blocks):
        if not block:
            raise Bad(f"data block {n} is empty")
        separator = handles[n][0]
        if separator < block[-1][0] or (n + 1 < len(blocks) and blocks[n + 1] and separator >= blocks[n + 1][0][0]):
            raise Bad(f"index key of data block {n} does not separate it from its neighbours")
        for key, value in block:
            if previous is not None and key <= previous:
                raise Bad(f"key {key[:80]!r} is not after {previous[:80]!r}: a lookup would not find it")
            previous = key
            if header is None:
                if key != b"":
                    raise Bad("the first key is not the header entry ''")
                header = parse_header(value)
            else:
                entries.append(parse_entry(key, value))
    if header is None:
        raise Bad("no header entry (the table has no data block)")
    return header, entries


# --------------------------------------------------------------------------- format entry points


def detect(head: bytes) -> bool:
    """The index's first entry is the header: shared 0, key length 0, a small BundleHeaderProto."""
    if head[:2] != b"\x00\x00" or len(head) < 4:
        return False
    try:
        length, pos = varint(head, 2)
        if not 2 <= length <= 64 or pos + length > len(head):
            return False
        parse_header(head[pos : pos + length])
    except (ValueError, AssertionError):
        return False
    return True


def _bad(ctx: ScanContext, rule: str, category: Category, message: str) -> None:
    severity = Severity.HIGH if category in (Category.UNKNOWN, Category.UNRECOGNIZED) else Severity.MEDIUM
    ctx.add(f"tf-bundle.{rule}", category, severity, message)


def scan(data: Data, ctx: ScanContext) -> None:
    if len(data) > ctx.limits.max_header_bytes:
        _bad(ctx, "size-limit", Category.LIMIT, f"tensor bundle index above {ctx.limits.max_header_bytes} bytes")
        return
    try:
        header, entries = read_index(data)
    except Unsupported as exc:
        _bad(ctx, "unsupported", Category.UNKNOWN, f"tensor bundle index: {exc}")
        return
    except Bad as exc:
        _bad(ctx, "malformed", Category.MALFORMED, f"tensor bundle index: {exc}")
        return
    if _judge_entries(header, entries, ctx):
        _check_shards(header, entries, ctx)


def _judge_entries(header: Header, entries: list[Entry], ctx: ScanContext) -> bool:
    """Dtypes and sizes of every entry; False when the index cannot be trusted further."""
    ok = True
    for entry in entries:
        name = entry.key[:80]
        if entry.dtype in (DT_VARIANT, DT_RESOURCE):
            kind = "DT_VARIANT" if entry.dtype == DT_VARIANT else "DT_RESOURCE"
            _bad(ctx, "variant", Category.UNKNOWN, f"entry {name!r} is {kind}: decoded by C++ code, not read here")
            ok = False
        elif entry.dtype not in ITEM_SIZES and entry.dtype not in _PACKED and entry.dtype != DT_STRING:
            _bad(ctx, "malformed", Category.MALFORMED, f"entry {name!r} has no known dtype ({entry.dtype})")
            ok = False
        elif entry.shard >= header.num_shards:
            text = f"entry {name!r} names shard {entry.shard} of {header.num_shards}"
            _bad(ctx, "malformed", Category.MALFORMED, text)
            ok = False
        elif not _size_fits(entry):
            _bad(ctx, "malformed", Category.MALFORMED, f"entry {name!r}: {entry.size} bytes for shape {entry.shape}")
            ok = False
    return ok


def _size_fits(entry: Entry) -> bool:
    """The reader reads exactly elements x item size for fixed-size dtypes (a sliced tensor's
    own entry holds no bytes: its slices are entries of their own)."""
    if entry.slices:
        return entry.size == 0
    elements = math.prod(entry.shape)
    if entry.dtype in ITEM_SIZES:
        return entry.size == elements * ITEM_SIZES[entry.dtype]
    if entry.dtype == DT_STRING:  # a varint length per element, a 4-byte CRC of the lengths, the bytes
        return entry.size >= elements + 4 if elements else entry.size in (0, 4)
    return entry.size <= elements  # sub-byte types: at most a byte per element


_SHARD_NAME = re.compile(r"\.data-(\d{5,})-of-(\d{5,})$")


def _check_shards(header: Header, entries: list[Entry], ctx: ScanContext) -> None:
    """Every shard the header names exists and holds every entry's bytes; no other shard of the prefix."""
    if ctx.member is not None:
        _bad(
            ctx,
            "unchecked-shards",
            Category.UNRECOGNIZED,
            "tensor bundle index inside an archive: its data shards are not cross-checked against it",
        )
        return
    if not ctx.file.endswith(".index"):
        text = "tensor bundle index not named <prefix>.index: no shard can be found"
        _bad(ctx, "unnamed", Category.UNRECOGNIZED, text)
        return
    prefix = ctx.file[: -len(".index")]
    folder = Path(ctx.root) / Path(prefix).parent
    expected = {f"{Path(prefix).name}.data-{i:05d}-of-{header.num_shards:05d}": i for i in range(header.num_shards)}
    sizes = _shard_sizes(folder, Path(prefix).name, expected, ctx)
    if sizes is None:
        return
    spans = _spans(entries)
    if sum(_check_layout(shard, spans.get(shard, []), sizes[shard], ctx) for shard in range(header.num_shards)):
        return
    base = Path(ctx.file).parent
    for name in expected:
        ctx.references.append(((base / name).as_posix(), DATA_LABEL))


def _spans(entries: list[Entry]) -> dict[int, list[tuple[int, int, bytes]]]:
    """Each shard's (offset, end, key) byte ranges, in order (an empty tensor reads nothing)."""
    spans: dict[int, list[tuple[int, int, bytes]]] = {}
    for entry in entries:
        if entry.size:
            spans.setdefault(entry.shard, []).append((entry.offset, entry.offset + entry.size, entry.key))
    return {shard: sorted(found) for shard, found in spans.items()}


def _check_layout(shard: int, spans: list[tuple[int, int, bytes]], size: int, ctx: ScanContext) -> int:
    """The entries tile the shard from byte 0 to its end, as the writer lays them out: a range
    past the end, two entries sharing bytes, or bytes no entry reads are findings (how many)."""
    pos, problems = 0, 0
    for offset, end, key in spans:
        if end > size:
            rule, category, text = "out-of-shard", Category.MALFORMED, f"bytes {offset}..{end} lie past its end"
        elif offset < pos:
            rule, category, text = "overlap", Category.MALFORMED, f"bytes {offset}..{end} overlap the entry before"
        elif offset > pos:
            rule, category = "unread-bytes", Category.UNRECOGNIZED
            text = f"bytes {pos}..{offset} before it are read by no entry"
        else:
            pos = end
            continue
        problems += 1
        if problems <= _MAX_SHARD_FINDINGS:
            _bad(ctx, rule, category, f"shard {shard} ({size} bytes), entry {key[:80]!r}: {text}")
        pos = max(pos, end)
    if pos < size:
        problems += 1
        _bad(ctx, "unread-bytes", Category.UNRECOGNIZED, f"shard {shard}: bytes {pos}..{size} are read by no entry")
    return problems


def _shard_sizes(folder: Path, stem: str, expected: dict[str, int], ctx: ScanContext) -> list[int] | None:
    """The size of each named shard (None after a finding: one missing, or a stray shard)."""
    try:
        present = {name for name in os.listdir(folder) if name.startswith(stem + ".data-") and _SHARD_NAME.search(name)}
    except OSError as exc:
        _bad(ctx, "missing-shard", Category.MALFORMED, f"cannot list the shards of the tensor bundle: {exc}")
        return None
    sizes = [0] * len(expected)
    ok = True
    for name, index in expected.items():
        try:
            info = (folder / name).lstat()
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            _bad(ctx, "missing-shard", Category.MALFORMED, f"data shard {name} named by the index is not a file here")
            ok = False
        else:
            sizes[index] = info.st_size
    for name in sorted(present - expected.keys())[:_MAX_SHARD_FINDINGS]:
        text = f"data shard {name} is not one of the {len(expected)} the index names"
        _bad(ctx, "stray-shard", Category.UNRECOGNIZED, text)
        ok = False
    return sizes if ok else None
