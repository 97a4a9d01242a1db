"""Where joblib's inline NumPy array bytes end, read from the wrapper's pickled state.

``joblib.dump`` pickles a ``NumpyArrayWrapper`` (shape, order, dtype) and writes
the array's raw bytes straight into the stream after the wrapper's BUILD; object
arrays are written as a nested pickle instead. The scanner must step over the raw
bytes (they are not opcodes) and must walk the nested pickle.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DTYPE_STR = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)")
_KIND_SIZES = {"b": 1, "?": 1, "i": None, "u": None, "f": None, "c": None, "M": 8, "m": 8, "S": None, "V": None}


@dataclass(frozen=True)
class Extent:
    pickled: bool  # an object array: a nested pickle follows
    nbytes: int = 0
    aligned: bool = False  # a padding-length byte and padding precede the bytes


def _dtype_info(dtype: object) -> tuple[int, bool]:
    """(itemsize, has_objects) of a symbolic ``numpy.dtype(...)`` call with its BUILD state."""
    func = getattr(dtype, "func", None)
    args = getattr(dtype, "args", None)
    state = getattr(dtype, "state", None)
    if getattr(func, "full", None) != "numpy.dtype" or not isinstance(args, tuple) or not args:
        raise ValueError("dtype is not a static numpy.dtype(...)")
    spec = args[0]
    if not isinstance(spec, str) or not (match := _DTYPE_STR.match(spec)):
        raise ValueError(f"unreadable dtype {spec!r}")
    kind, digits = match.group(1), match.group(2)
    # BUILD state: (version, byteorder, subdtype, names, fields, elsize, alignment, flags[, metadata])
    flags = state[7] if isinstance(state, tuple) and len(state) > 7 and isinstance(state[7], int) else 0
    if kind == "O" or flags & 1:
        return 8, True
    elsize = state[5] if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) else -1
    if elsize > 0:
        return elsize, False
    if digits:
        return int(digits), False
    size = _KIND_SIZES.get(kind)
    if size is None:
        raise ValueError(f"dtype {spec!r} has no size")
    return size, False


def array_extent(state: object) -> Extent:
    """The extent of the array bytes that follow a NumpyArrayWrapper with this state."""
    if not isinstance(state, dict):
        raise ValueError("wrapper state is not a dict")
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("wrapper shape is not a tuple of sizes")
    itemsize, has_objects = _dtype_info(state.get("dtype"))
    if has_objects:
        return Extent(pickled=True)
    return Extent(
        pickled=False,
        nbytes=math.prod(shape) * itemsize,
        aligned=state.get("numpy_array_alignment_bytes") is not None,
    )
