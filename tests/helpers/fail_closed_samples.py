"""Builders for the fail-closed corpus samples that the class tests write inside a test function.

The issue-13 class tests (test_scan_unrecognized, test_scan_archives_differential,
test_scan_code_configs) prove each attack live; tests/helpers/scan_corpus.py reuses the builders
they share (unrecognized_samples, archive_samples, code_config_samples, saved_models) and these
few, copied here byte for byte from inside their test functions so the corpus can write the same
files without running a test. Nothing here loads or runs a sample.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import marshal
import struct
import tarfile
import zipfile
import zlib
from typing import Any


def pyc(source: str) -> bytes:
    """What py_compile writes for ``source`` (PEP 552 timestamp header), compiled but never run."""
    code = compile(source, "payload.py", "exec")
    return importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, 0, len(source)) + marshal.dumps(code)


def v7_torch_tar(pickle_bytes: bytes) -> bytes:
    """test_a_v7_tar_of_pickles_is_not_silently_safe: 'storages', 'tensors', 'pickle' with no ustar magic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in ("storages", "tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = len(pickle_bytes)
            archive.addfile(info, io.BytesIO(pickle_bytes))
    raw = bytearray(buffer.getvalue())
    raw[257:265] = bytes(8)  # no magic, no version: a V7 header
    raw[148:156] = b"        "
    raw[148:156] = b"%06o\x00 " % sum(raw[:512])
    return bytes(raw)


def png_hiding_zip(image: bytes, pickle_bytes: bytes) -> bytes:
    """test_an_image_that_is_also_a_zip_is_blocked: a valid PNG whose private chunk is a zip of a pickle."""
    from tests.helpers.inert_samples import png_chunk

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", pickle_bytes)
    zip_bytes = buffer.getvalue()
    zip_bytes = zip_bytes[:-2] + struct.pack("<H", 4 + 12)  # the comment swallows the chunk CRC and IEND
    data = image[:-12] + png_chunk(b"zIPp", zip_bytes)[:-4]
    return data + struct.pack(">I", zlib.crc32(b"zIPp" + zip_bytes)) + image[-12:]


def gzip_header_tar(benign_pickle: bytes, tar_of_payload: bytes) -> bytes:
    """test_gzip_whose_header_is_also_a_tar_scans_both_views: gzip's FEXTRA swallows a tar header."""
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = (
        body.compress(benign_pickle) + body.flush() + struct.pack("<LL", zlib.crc32(benign_pickle), len(benign_pickle))
    )
    block = bytearray(512)
    block[:12] = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + struct.pack("<H", 500)
    block[100:108] = b"0000644\x00"
    block[108:124] = b"0000000\x00" * 2
    block[124:136] = b"%011o\x00" % len(deflated)
    block[136:148] = b"00000000000\x00"
    block[156:157] = b"0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block) + deflated + bytes(-len(deflated) % 512) + tar_of_payload


def keras_unlock_and_lambda(command: str) -> dict[str, Any]:
    """test_keras_enable_unsafe_and_lambda_block: enable_unsafe_deserialization called as a layer, then a Lambda.

    The lambda is compiled and marshalled, never called."""
    from tests.helpers.code_config_samples import call_layer, functional, layer

    code = compile(f"lambda x: __import__('os').system({command!r}) or x", "<p>", "eval")
    function = base64.b64encode(marshal.dumps(code.co_consts[0])).decode()
    tensor = {
        "class_name": "__keras_tensor__",
        "config": {"shape": [None, 4], "dtype": "float32", "keras_history": ["input", 0, 0]},
    }
    lam = layer(
        "keras.layers",
        "Lambda",
        {
            "name": "lam",
            "function": {"class_name": "__lambda__", "config": {"code": function, "defaults": None, "closure": None}},
            "arguments": {},
        },
        "lam",
        [{"args": [tensor], "kwargs": {}}],
    )
    unlock = call_layer("keras.config", "enable_unsafe_deserialization", {})
    return functional([unlock, lam], "lam")
