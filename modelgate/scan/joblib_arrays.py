"""Where joblib's inline NumPy array bytes end, computed the way numpy and joblib compute it.

``joblib.dump`` pickles a ``NumpyArrayWrapper`` (shape, order, dtype) and writes the
array's raw bytes straight into the stream after the wrapper's BUILD; arrays whose
dtype has objects are written as a nested pickle instead, which joblib reads back
with ``pickle.load``. The scanner must step over exactly the bytes joblib reads.

The dtype joblib uses is the one numpy rebuilds from the pickle: ``numpy.dtype(spec)``
then ``__setstate__(state)``. numpy takes the item size from the spec for fixed-size
kinds, but from the state's ``elsize`` for the flexible kinds (S, U, V), and the
has-objects flag from the state's flags whatever the spec says. A scanner that reads
the spec alone steps over the wrong number of bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SPEC = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)")
_FLEXIBLE = frozenset("SUVa")
_NPY_ITEM_HASOBJECT = 0x01
_STATE_VERSIONS = (3, 4)  # numpy writes (version, byteorder, subarray, names, fields, elsize, align, flags[, meta])


@dataclass(frozen=True)
class Extent:
    pickled: bool  # an object array: a nested pickle follows
    nbytes: int = 0
    aligned: bool = False  # a padding-length byte and padding precede the bytes


def _fixed_itemsize(spec: str) -> int:
    import numpy

    try:
        size = int(numpy.dtype(spec).itemsize)  # parsing a dtype string runs no code
    except (TypeError, ValueError, SyntaxError) as exc:
        raise ValueError(f"unreadable dtype {spec!r}: {exc}") from None
    return size


def dtype_info(dtype: object) -> tuple[int, bool]:
    """(itemsize, has_objects) of a traced ``numpy.dtype(spec, ...)`` call with its BUILD state."""
    func = getattr(dtype, "func", None)
    args = getattr(dtype, "args", None)
    state = getattr(dtype, "state", None)
    if getattr(func, "full", None) != "numpy.dtype" or not isinstance(args, tuple) or not args:
        raise ValueError("dtype is not a static numpy.dtype(...)")
    spec = args[0]
    if not isinstance(spec, str) or not (match := _SPEC.match(spec)):
        raise ValueError(f"unreadable dtype {spec!r}")
    kind = match.group(1)
    if state is None:
        return _fixed_itemsize(spec), kind == "O"
    if not (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in _STATE_VERSIONS
        and isinstance(state[5], int)
        and isinstance(state[7], int)
    ):
        raise ValueError(f"dtype state {str(state)[:80]} is not one numpy writes")
    has_objects = bool(state[7] & _NPY_ITEM_HASOBJECT)
    if has_objects:
        return 8, True
    if kind in _FLEXIBLE:
        if state[5] < 0:
            raise ValueError(f"flexible dtype {spec!r} with item size {state[5]}")
        return state[5], False
    return _fixed_itemsize(spec), False


def array_extent(state: object) -> Extent:
    """The extent of the array bytes that follow a NumpyArrayWrapper with this state."""
    if not isinstance(state, dict):
        raise ValueError("wrapper state is not a dict")
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError("wrapper shape is not a tuple of sizes")
    itemsize, has_objects = dtype_info(state.get("dtype"))
    if has_objects:
        return Extent(pickled=True)
    return Extent(
        pickled=False,
        nbytes=math.prod(shape) * itemsize,
        aligned=state.get("numpy_array_alignment_bytes") is not None,
    )
