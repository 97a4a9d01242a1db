"""The ordered registry of format scanners; the first whose ``detect`` matches the head wins.

Order matters only where signatures could overlap: formats with a strong magic come
first, safetensors (a length prefix) before pickle (whose PROTO byte a length could
mimic), ONNX (a protobuf shape check) and the tentative protocol-0/1 pickle last. A tensor
bundle index starts with its header entry (two zero bytes and a BundleHeaderProto).
"""

from __future__ import annotations

from typing import Protocol

from modelgate.scan import zipwalk
from modelgate.scan.base import Data, ScanContext
from modelgate.scan.formats import (
    compressed,
    gguf,
    hdf5,
    numpy_npy,
    onnx_model,
    pickle_stream,
    safetensors,
    saved_model,
    tar_archive,
    tf_bundle,
    zip_archive,
)

HEAD_BYTES = 4096


class FormatScanner(Protocol):
    NAME: str

    def detect(self, head: bytes) -> bool: ...

    def scan(self, data: Data, ctx: ScanContext) -> None: ...


REGISTRY: tuple[FormatScanner, ...] = (
    zip_archive,
    numpy_npy,
    hdf5,
    gguf,
    safetensors,
    compressed,
    tar_archive,
    tf_bundle,
    saved_model,
    onnx_model,
    pickle_stream,
)


def detect(head: bytes, data: Data | None = None) -> FormatScanner | None:
    """The scanner for data starting with ``head`` (the first HEAD_BYTES bytes), if any.

    Given the whole ``data``, a zip end record at its tail wins over any head (zip readers
    find the archive from its end), and a head another scanner claims that ``tarfile``
    also opens is a polyglot: both views are scanned.
    """
    if data is not None and zipwalk.has_zip_tail(data):
        scanner: FormatScanner | None = zip_archive
    else:
        scanner = next((s for s in REGISTRY if s.detect(head)), None)
    if scanner is not None and scanner is not tar_archive and tar_archive.is_tar_header(head):
        return tar_archive.AlsoTar(scanner)
    return scanner
