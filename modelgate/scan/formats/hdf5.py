"""HDF5 files (Keras ``.h5`` models and weights): model configs and links to other files.

A Keras ``.h5`` model keeps its architecture as JSON in the root attribute
``model_config`` (and ``training_config``): Lambda layers and custom objects hide
there. HDF5 external links and external dataset storage make a loader open other
files, so they are findings too. The file is opened from memory (no copy, no disk).
"""

from __future__ import annotations

import io
import json
from typing import Any

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity

NAME = "hdf5"
MAGIC = b"\x89HDF\r\n\x1a\n"
_OFFSETS = (0, 512, 1024, 2048)  # the superblock may follow a user block of 512 * 2^n bytes
_CONFIG_ATTRS = ("model_config", "training_config")
_MAX_LINK_FINDINGS = 50


def detect(head: bytes) -> bool:
    return any(head[offset : offset + 8] == MAGIC for offset in _OFFSETS)


class ViewFile(io.RawIOBase):
    """A read-only, seekable file over a memoryview (h5py's ``fileobj`` driver reads through it)."""

    def __init__(self, data: Data) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._data[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n


def _config(value: object) -> object:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ValueError("attribute is not a string")
    return json.loads(value)


def _check_links(handle: Any, ctx: ScanContext) -> None:
    import h5py

    found: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"external link {name!r} -> {link.filename}:{link.path}")
            return
        if isinstance(link, h5py.HardLink):
            obj = handle.get(name)
            if isinstance(obj, h5py.Dataset) and obj.external:
                files = ", ".join(str(entry[0]) for entry in obj.external)
                found.append(f"dataset {name!r} stores its data in external files {files}")

    handle.visititems_links(visit)
    for message in found[:_MAX_LINK_FINDINGS]:
        ctx.add("hdf5.external-file", Category.DANGEROUS, Severity.HIGH, f"HDF5 {message}: reads another file")


def scan(data: Data, ctx: ScanContext) -> None:
    import h5py

    from modelgate.scan import keras_config

    view = ViewFile(data)
    try:
        with h5py.File(view, "r") as handle:
            for attr in _CONFIG_ATTRS:
                if attr not in handle.attrs:
                    continue
                ctx.format = "keras-h5"
                try:
                    config = _config(handle.attrs[attr])
                except (ValueError, RecursionError) as exc:
                    ctx.add("keras.malformed", Category.MALFORMED, Severity.MEDIUM, f"{attr} is not JSON: {exc}")
                    continue
                keras_config.check(config, ctx, root=attr)
            _check_links(handle, ctx)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, SystemError) as exc:
        ctx.add("hdf5.malformed", Category.MALFORMED, Severity.MEDIUM, f"HDF5 does not open: {exc}")
