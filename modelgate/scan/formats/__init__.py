"""The ordered registry of format scanners; the first whose ``detect`` matches the head wins.

Order matters only where signatures could overlap: formats with a strong magic come
first, safetensors (a length prefix) before pickle (whose PROTO byte a length could
mimic), ONNX (a protobuf shape check) and the tentative protocol-0/1 pickle last.
"""

from __future__ import annotations

from typing import Protocol

from modelgate.scan.base import ScanContext
from modelgate.scan.formats import (
    compressed,
    gguf,
    hdf5,
    numpy_npy,
    onnx_model,
    pickle_stream,
    safetensors,
    tar_archive,
    zip_archive,
)
from modelgate.scan.pickle_scan import Data

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
    onnx_model,
    pickle_stream,
)


def detect(head: bytes) -> FormatScanner | None:
    """The scanner for data starting with ``head`` (the first HEAD_BYTES bytes), if any."""
    for scanner in REGISTRY:
        if scanner.detect(head):
            return scanner
    return None
