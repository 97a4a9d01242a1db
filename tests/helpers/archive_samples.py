"""Archives and compressed streams as their loaders read them, for the scanner tests.

tests/test_scan_archives_differential.py proves each malicious sample with the real loader in a
child process (tests/helpers/live.py); tests/helpers/scan_corpus.py writes the same bytes into the
corpus. Nothing here loads or runs a sample.
"""

from __future__ import annotations

import io
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import safetensors.numpy

from tests.helpers import live


class SystemPayload:
    """Pickles to a call of os.system(PAYLOAD_COMMAND); never unpickled in this process."""

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (live.PAYLOAD_COMMAND,)


def evil_pickle(protocol: int = 4) -> bytes:
    return pickle.dumps(SystemPayload(), protocol=protocol)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def evil_npz() -> bytes:
    evil = np.empty(1, dtype=object)
    evil[0] = SystemPayload()
    return npz_bytes({"weights": np.arange(4, dtype=np.float32), "meta": evil})


def zip_bytes(members: dict[str, bytes] | list[tuple[str, bytes]], *, comment: bytes = b"") -> bytes:
    out = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in items:
            archive.writestr(name, data)
        archive.comment = comment
    return out.getvalue()


def safetensors_bytes() -> bytes:
    return safetensors.numpy.save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})


def prefixed_zip(prefix: bytes, archive: bytes) -> bytes:
    """``prefix + archive`` with the directory's offsets counting the prefix (no 'data before the archive')."""
    data = bytearray(prefix + archive)
    eocd = data.rfind(b"PK\x05\x06")
    count, _size, cd_offset = struct.unpack_from("<HLL", data, eocd + 10)
    struct.pack_into("<L", data, eocd + 16, cd_offset + len(prefix))
    pos = cd_offset + len(prefix)
    for _ in range(count):
        assert data[pos : pos + 4] == b"PK\x01\x02"
        (header_offset,) = struct.unpack_from("<L", data, pos + 42)
        struct.pack_into("<L", data, pos + 42, header_offset + len(prefix))
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + name_len + extra_len + comment_len
    return bytes(data)


def tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT, **info: object) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for name, data in members:
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mtime = 0
            entry.mode = 0o644
            for key, value in info.items():
                setattr(entry, key, value)
            archive.addfile(entry, io.BytesIO(data))
    return out.getvalue()


def _checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)


def as_v7(data: bytes) -> bytes:
    """The same archive with every header in the magic-less V7 layout (tarfile still reads it)."""
    out = bytearray(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        offsets = [member.offset for member in archive]
    for offset in offsets:
        block = out[offset : offset + 512]
        block[257:500] = bytes(243)
        _checksum(block)
        out[offset : offset + 512] = block
    assert b"ustar" not in bytes(out[257:265])
    return bytes(out)


def torch_legacy_members(where: str) -> list[tuple[str, bytes]]:
    """torch's legacy tar layout (serialization._legacy_load): 'storages', 'tensors', 'pickle'."""
    members = {
        "storages": pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2),
        "tensors": pickle.dumps(0, protocol=2),
        "pickle": pickle.dumps({"epoch": 3}, protocol=2),
    }
    evil = evil_pickle(2)
    members[where] = evil + members[where][len(pickle.dumps(0, protocol=2)) :] if where != "pickle" else evil
    return list(members.items())


TAR_FORMATS = {
    "ustar": lambda m: tar_bytes(m, tarfile.USTAR_FORMAT),
    "gnu": lambda m: tar_bytes(m, tarfile.GNU_FORMAT),
    "pax": lambda m: tar_bytes(m, tarfile.PAX_FORMAT, pax_headers={"comment": "pax header"}),
    "v7": lambda m: as_v7(tar_bytes(m, tarfile.USTAR_FORMAT)),
}


def lzma_alone(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_ALONE)


def zfile(data: bytes) -> bytes:
    """joblib's pre-0.9.3 compressed file: 'ZF', the hex length padded to 19, zlib data."""
    return b"ZF" + hex(len(data)).encode().ljust(19) + zlib.compress(data)
