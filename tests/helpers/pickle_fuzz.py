"""Generated and mutated model files for the scanner's differential test and its fuzzer.

``recorded_globals`` is the oracle: CPython's C unpickler (reading a non-peekable file,
as torch.load does, and a peekable one, as pickle.load(open(...)) does) and its pure-
Python unpickler (joblib.load), each subclassed so that ``find_class`` records the
name and hands back an inert stub. Nothing real is ever imported or called.

``check`` is the invariant the fuzzer holds the scanner to: it never raises, and a file
it calls safe reaches no global off the allowlist in any of the three readings.
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import io
import os
import pickle
import random
import struct
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

from modelgate.scan import scan_bytes
from modelgate.scan.allowlist import Verdict, classify
from tests.helpers.pickle_attacks import os_system_call, u8


class _Reduce:
    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


class _Inert:
    """What the oracle's find_class returns: accepts every use the unpickler makes of objects."""

    def __new__(cls, *args: object, **kwargs: object) -> _Inert:
        return object.__new__(_Inert)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _Inert()

    def __setstate__(self, state: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _inert_class() -> type:
    return type("Inert", (_Inert,), {})


class _RecordingC(pickle.Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="latin1")
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str, /) -> type:
        self.seen.append((module, name))
        return _inert_class()

    def persistent_load(self, pid: object, /) -> object:
        return _Inert()


class _RecordingPython(pickle._Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="latin1")
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> type:
        self.seen.append((module, name))
        return _inert_class()

    def persistent_load(self, pid: object) -> object:
        return _Inert()

    def _bytearray8(self) -> None:  # the stock one zeroes the claimed length before reading
        (length,) = struct.unpack("<Q", self.read(8))
        if length > _MAX_PY_OPS_BYTES:
            raise pickle.UnpicklingError("BYTEARRAY8 longer than the data")
        self.append(bytearray(self.read(length)))

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BYTEARRAY8[0]] = _bytearray8  # type: ignore[assignment]


_MAX_PY_OPS_BYTES = 2_000_000  # the pure-Python oracle is slow: it reads only this much


def recorded_globals(data: bytes) -> dict[str, list[tuple[str, str]]]:
    """What each reading resolves before it stops (finished or failed)."""
    assert not (copyreg._extension_registry or copyreg._extension_cache)  # type: ignore[attr-defined]
    readers: dict[str, Any] = {
        "c-bytesio": lambda: _RecordingC(io.BytesIO(data)),
        "c-peek": lambda: _RecordingC(io.BufferedReader(io.BytesIO(data))),  # type: ignore[arg-type]
        "python": lambda: _RecordingPython(io.BytesIO(data[:_MAX_PY_OPS_BYTES])),
    }
    if _memo_bomb(data):  # the C unpickler would zero a memo array of twice the index: read it the Python way
        readers = {"python": readers["python"]}
    seen: dict[str, list[tuple[str, str]]] = {}
    for name, make in readers.items():
        unpickler = make()
        try:
            unpickler.load()
        except BaseException as exc:  # noqa: BLE001 - a malformed stream fails: what it saw still counts
            if isinstance(exc, KeyboardInterrupt):
                raise
        seen[name] = unpickler.seen
    return seen


def _memo_bomb(data: bytes) -> bool:
    """Whether a memo store with a huge index (the scanner's threshold) may be read (exactly where the flat index reads
    to the end; conservatively wherever a candidate store sits otherwise)."""
    from modelgate.scan import pickle_ops
    from modelgate.scan.pickle_trace import _BIG_PUT, MAX_C_MEMO_INDEX

    if _BIG_PUT.search(data) is None:
        return False
    index = pickle_ops.index(data, puts=True)
    return not index.ok or pickle_ops.largest_put(data, index) >= MAX_C_MEMO_INDEX


def allowlisted(module: str, name: str) -> bool:
    """Whether a loader's find_class would resolve only a safe global here (a module that does not
    exist cannot be resolved: the load stops there)."""
    if not _top_exists(module):
        return True
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return classify(module, name) is Verdict.SAFE


def _top_exists(module: str) -> bool:
    import importlib.util

    top = module.split(".", 1)[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def mapped(module: str, name: str) -> str:
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


@dataclass
class Outcome:
    kind: str
    verdict: str
    escaped: list[tuple[str, str, str]] = field(default_factory=list)  # (reader, module, name) judged safe
    scan_s: float = 0.0  # the scanner's time alone (the oracle's is not the scanner's)


def check(data: bytes, kind: str) -> Outcome:
    """Scan ``data``; for a safe verdict, trace its pickles with the oracle (escapes = failures)."""
    start = time.perf_counter()
    report = scan_bytes(data, f"fuzz.{kind}")
    outcome = Outcome(kind, report.verdict, scan_s=time.perf_counter() - start)
    if report.verdict != "safe":
        return outcome
    for stream in _pickle_streams(data):
        for reader, seen in recorded_globals(stream).items():
            outcome.escaped.extend((reader, m, n) for m, n in seen if not allowlisted(m, n))
    return outcome


def _pickle_streams(data: bytes) -> list[bytes]:
    """The bytes a loader would unpickle: the file itself, or each member of a zip."""
    streams = [data]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist()[:64]:
                if info.file_size <= 4 << 20:
                    streams.append(archive.read(info))
    except Exception:  # noqa: BLE001 - not a zip zipfile can read: nothing more to unpickle
        pass
    return streams


# -- generators ---------------------------------------------------------------------------------
_DANGEROUS = [(os.system, ("true",)), (eval, ("1",)), (getattr, ("", "join")), (open, ("/dev/null",))]
_OTHER = [(collections.OrderedDict, ()), (complex, (1, 2)), (bytearray, (b"ab",)), (range, (3,))]


def random_object(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 4 or roll < 0.35:
        return rng.choice(
            [
                rng.randrange(-(2**70), 2**70),
                rng.randrange(-300, 300),
                rng.random() * 1e6,
                "".join(rng.choice("abcé€\U0001f600\n'\"\\") for _ in range(rng.randrange(12))),
                bytes(rng.randrange(256) for _ in range(rng.randrange(20))),
                None,
                True,
                False,
            ]
        )
    if roll < 0.45:
        func, args = rng.choice(_DANGEROUS + _OTHER)
        return _Reduce(func, args)
    if roll < 0.55:
        return collections.OrderedDict((str(i), random_object(rng, depth + 1)) for i in range(rng.randrange(4)))
    items = [random_object(rng, depth + 1) for _ in range(rng.randrange(6))]
    shape = rng.randrange(5)
    if shape == 0:
        return tuple(items)
    if shape == 1:
        shared = items[:1] * 3  # memo: the same object several times
        return items + shared
    if shape == 2:
        return {f"k{i}": v for i, v in enumerate(items)}
    if shape == 3:
        return frozenset(i for i in items if isinstance(i, int | str | bytes))
    return {i for i in items if isinstance(i, int | str)}


def generated_pickle(rng: random.Random) -> bytes:
    return pickle.dumps(random_object(rng), protocol=rng.randrange(6))


_SNIPPETS = [
    os_system_call(),
    b"\x95" + struct.pack("<Q", 7),
    b"I0x10\n",
    b"F 1.5\n",
    b"g1\n",
    b"p1_0\n",
    u8("os") + u8("system") + b"\x93",
    b"\x82\x01",
    b"\x96" + struct.pack("<Q", 20 << 30),  # a BYTEARRAY8 claiming 20 GiB
    b".",
    b"(",
    b"0",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level edits: flips, inserts, deletes, splices of opcode snippets, duplicated slices."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if not buf:
            buf += rng.choice(_SNIPPETS)
            continue
        pos = rng.randrange(len(buf))
        op = rng.randrange(6)
        if op == 0:
            buf[pos] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(_SNIPPETS)
        elif op == 2:
            del buf[pos : pos + rng.randrange(1, 8)]
        elif op == 3:
            end = min(len(buf), pos + rng.randrange(1, 32))
            buf[pos:pos] = buf[pos:end]
        elif op == 4:
            buf[pos] ^= 1 << rng.randrange(8)
        else:
            buf[pos : pos + 8] = struct.pack("<Q", rng.randrange(1 << rng.choice((8, 16, 40, 63))))
    return bytes(buf)


def torch_zip_bytes(rng: random.Random) -> bytes:
    from tests.helpers.pickle_attacks import torch_zip

    return torch_zip(pickle.dumps({"w": [1.0, 2.0], "x": random_object(rng)}, protocol=2))


def safetensors_bytes(rng: random.Random) -> bytes:
    import json

    n = rng.randrange(1, 5)
    header = {f"t{i}": {"dtype": "F32", "shape": [2], "data_offsets": [8 * i, 8 * i + 8]} for i in range(n)}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(8 * n)


def zip_bytes(rng: random.Random) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive:
        archive.writestr("a.pkl", generated_pickle(rng))
        archive.writestr("config.json", '{"a": 1}')
    return out.getvalue()


KINDS = {
    "pkl": generated_pickle,
    "pt": torch_zip_bytes,
    "safetensors": safetensors_bytes,
    "zip": zip_bytes,
}


def fuzz_input(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(list(KINDS))
    base = KINDS[kind](rng)
    return kind, (mutate(base, rng) if rng.random() < 0.85 else base)
