"""Trace a pickle with CPython's own unpicklers, every global replaced by an inert stub.

Why CPython's: a scanner that re-implements the opcode parser disagrees with the
loaders somewhere (text arguments across frames, numbers ``int()`` refuses but
``strtol`` takes, truncated frames the pure-Python unpickler still executes), and
each disagreement is a way past it. So the stream is run through the C unpickler
(``torch.load``, ``pickle.load``, ``numpy.load``) and, when that one rejects it,
through the pure-Python one (``joblib.load``), with every way out of the
unpickler closed:

* ``find_class`` never imports: it records the name and returns a fresh stub type;
* ``persistent_load`` returns a stub; EXT codes are recorded (the C unpickler is only
  used while copyreg's extension registry and cache are empty, as in a fresh process);
* the only callables that can reach the stack are those stubs, so REDUCE, NEWOBJ,
  INST, OBJ and BUILD call nothing but the recorder below; every other object on the
  stack is a plain int, str, bytes, tuple, list, dict or set built by the unpickler.

What a stream *means* is thus exactly what the loaders see; whether the loaders see
the same thing (frames) is decided by :mod:`modelgate.scan.pickle_ops`.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import copyreg
import gc
import importlib.util
import pickle
import re
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from modelgate.scan import joblib_arrays
from modelgate.scan.allowlist import Verdict, classify, is_loads_like
from modelgate.scan.findings import Category, Severity

Data = bytes | memoryview

_PREFETCH = 1 << 17  # what the C unpickler asks a peekable file for (Modules/_pickle.c PREFETCH)
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_CODEC_FOLD = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"}
_MAX_SYMBOLIC_DEPTH = 32
_MAX_SYMBOLIC_NODES = 100_000
_MAX_KEPT_VALUE = 100_000  # a STOP value larger than this is not kept (only small ones are ever read)
_NL = re.compile(b"\n")
_VERDICT_RANK = {Verdict.SAFE: 0, Verdict.UNKNOWN: 1, Verdict.CODE: 2, Verdict.DANGEROUS: 3}

if pickle.Unpickler is pickle._Unpickler:  # pragma: no cover - every CPython build has _pickle
    raise ImportError("modelgate's scanner needs CPython's C unpickler (_pickle)")


# -- what a trace reports -----------------------------------------------------------------------
@dataclass(frozen=True)
class Global:
    module: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """A call the unpickler made (REDUCE, NEWOBJ, INST, OBJ) on a stub: never really made."""

    func: object
    args: object
    offset: int
    state: object = None


@dataclass(eq=False)
class Persistent:
    pid: object


@dataclass(eq=False)
class Opaque:
    what: str


@dataclass
class Issue:
    """A finding in waiting: ``definite`` ones stand even if the bytes turn out to be raw data."""

    rule_id: str
    category: Category
    severity: Severity
    message: str
    offset: int
    global_name: str | None = None
    definite: bool = False
    event: tuple[frozenset[int], int] | None = None  # (opcodes, k): the k-th such opcode caused it


@dataclass
class Nested:
    offset: int
    payload: Data
    via: str


@dataclass
class WalkResult:
    start: int
    end: int = 0
    ok: bool = False
    error: str | None = None
    error_offset: int | None = None
    limit_hit: bool = False
    value: object = None
    proto: int = 0
    calls: int = 0
    plausible_globals: int = 0  # globals whose top-level module exists here (a loader would import it)
    issues: list[Issue] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    persistent_ids: list[object] = field(default_factory=list)
    nested: list[Nested] = field(default_factory=list)
    joblib_arrays: int = 0
    skips: dict[int, int] = field(default_factory=dict)  # joblib raw array bytes: position -> resume


def describe(value: object, depth: int = 0) -> str:
    """A short human description of a traced value (for messages)."""
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Call):
        return "the result of a call" if depth > 3 else f"the result of calling {describe(value.func, depth + 1)}"
    if isinstance(value, Persistent):
        return "a persistent object"
    if isinstance(value, Opaque):
        return value.what
    return type(value).__name__


class _NeedExactPositions(Exception):
    """A joblib array was met while reading through a peeking file: rerun reading exactly."""


class _OpBudget(Exception):
    pass


class _NeedMemoCheck(Exception):
    """The C unpickler's next bytes may store into its memo at a huge index."""


# LONG_BINPUT with an index >= 2**22, or a text PUT with 7+ digits (the C memo would take >= 64 MiB).
_BIG_PUT = re.compile(
    rb"r[\x00-\xff][\x00-\xff](?:[\x40-\xff][\x00-\xff]|[\x00-\x3f][\x01-\xff])"
    rb"|p[ \t\x0b\x0c\r]*\+?0*[1-9][0-9_]{6,}",
    re.DOTALL,
)
_MAX_PUT_LINE = 64
MAX_C_MEMO_INDEX = 1 << 22  # the C memo would take >= 64 MiB


# -- the inert objects the unpickler gets instead of real ones ----------------------------------
class _StubMeta(type):
    """Calling a stub class (REDUCE, INST, OBJ) records the call instead of making it."""

    _trace: _Trace
    _glob: Global

    def __call__(cls, *args: object, **kwargs: object) -> object:
        return cls._trace.call(cls._glob, args, kwargs)


class _Value:
    """What a recorded call or persistent load returns: accepts what the unpickler does to objects."""

    __slots__ = ("_trace", "call")

    def __init__(self, trace: _Trace, call: Call | Persistent) -> None:
        self._trace = trace
        self.call = call

    def __setstate__(self, state: object) -> None:  # BUILD
        self._trace.build(self.call, state)

    def __call__(self, *args: object, **kwargs: object) -> object:  # REDUCE on a computed object
        return self._trace.computed_call(self.call, args, kwargs)

    def append(self, item: object) -> None:  # APPEND(S) on a non-list
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:  # ADDITEMS on a non-set
        pass

    def __setitem__(self, key: object, value: object) -> None:  # SETITEM(S) on a non-dict
        pass


def _make_stub(trace: _Trace, glob: Global) -> type:
    def __new__(cls: type, *args: object, **kwargs: object) -> object:  # NEWOBJ, NEWOBJ_EX, empty INST/OBJ
        return trace.call(glob, args, kwargs)

    def __setstate__(state: object) -> None:  # BUILD on the class itself
        trace.build_on_global(glob)

    namespace = {"__new__": __new__, "__setstate__": staticmethod(__setstate__), "_trace": trace, "_glob": glob}
    return _StubMeta(f"stub:{glob.full[:200]}", (), namespace)


# -- the files the unpicklers read --------------------------------------------------------------
class _PlainReader:
    """A non-peekable file over the data: the C unpickler reads exactly what it needs (frames whole),
    so ``pos`` is where a loader's file would be; the pure-Python unpickler needs real bytes.

    ``guard``: every chunk handed to the C unpickler is first searched for a memo store with a
    huge index (the C memo is an array grown to twice the index and zeroed: ``r\xff\xff\xff\x7f``
    would take 32 GiB); a hit stops the C run so the index can tell whether it is one."""

    def __init__(self, data: Data, pos: int, *, guard: bool = False) -> None:
        self.data, self.pos, self.size, self.guard = data, pos, len(data), guard

    def read(self, n: int = -1) -> bytes:
        """Real bytes, as a file's read gives (the C unpickler refuses anything else here)."""
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if self.guard:
            self._check(self.pos, end)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk if isinstance(chunk, bytes) else bytes(chunk)

    def _check(self, start: int, end: int) -> None:
        # a store's opcode may sit just before the chunk (the C unpickler read it earlier)
        if _BIG_PUT.search(self.data, max(0, start - _MAX_PUT_LINE), end):
            raise _NeedMemoCheck

    def readline(self) -> bytes:
        end = _find_newline(self.data, self.pos, self.size)
        end = self.size if end < 0 else end + 1
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk


class _PeekReader(_PlainReader):
    """Peekable: the C unpickler prefetches large windows and parses them in place (fast, flat);
    a window is a view of the data, never a copy."""

    def peek(self, n: int = 0) -> bytes | memoryview:
        end = min(self.size, self.pos + max(n, _PREFETCH))
        if self.guard:
            self._check(self.pos, end)
        return self.data[self.pos : end]


def _find_newline(data: Data, pos: int, end: int) -> int:
    match = _NL.search(data, pos, end)
    return -1 if match is None else match.start()


# -- the recorder -----------------------------------------------------------------------------
class _Trace:
    """One stream's records; shared by the C and the Python unpickler runs over it."""

    def __init__(self, data: Data, result: WalkResult, reader: _PlainReader, *, exact: bool, depth: int) -> None:
        self.data = data
        self.result = result
        self.reader = reader
        self.exact = exact  # reading positions are a loader's (needed for joblib arrays)
        self.depth = depth
        self.stubs: dict[Global, type] = {}
        self.counts = {"global": 0, "call": 0, "build": 0, "persid": 0}
        self.seen: set[tuple[str, str | None]] = set()
        self.seen_globals: set[str] = set()

    def _event(self, kind: str) -> int:
        k = self.counts[kind]
        self.counts[kind] = k + 1
        return k

    def issue(
        self,
        rule_id: str,
        category: Category,
        severity: Severity,
        message: str,
        global_name: str | None,
        event: tuple[frozenset[int], int] | None,
        *,
        definite: bool = False,
    ) -> None:
        key = (rule_id, global_name if global_name is not None else message)
        if key in self.seen:
            return
        self.seen.add(key)
        self.result.issues.append(
            Issue(rule_id, category, severity, message, self.reader.pos, global_name, definite, event)
        )

    # find_class
    def find_class(self, module: str, name: str) -> type:
        from modelgate.scan import pickle_ops

        k = self._event("global")
        glob, verdict = _resolve(module, name)
        full = glob.full
        if full not in self.seen_globals:
            self.seen_globals.add(full)
            self.result.globals.append(full)
        if _importable_top(module) or _importable_top(glob.module):
            self.result.plausible_globals += 1
        event = (pickle_ops.GLOBAL_OPS, k)
        if verdict is Verdict.DANGEROUS:
            self.issue(
                "pickle.dangerous-global",
                Category.DANGEROUS,
                Severity.CRITICAL,
                f"imports {full}, a known code-execution, file or network primitive",
                full,
                event,
                definite=True,
            )
        elif verdict is Verdict.CODE:
            self.issue(
                "pickle.torchscript-class",
                Category.CODE,
                Severity.HIGH,
                f"imports {full}, a class compiled from TorchScript code",
                full,
                event,
            )
        elif verdict is Verdict.UNKNOWN:
            self.issue(
                "pickle.unknown-global",
                Category.UNKNOWN,
                Severity.HIGH,
                f"imports {full}, which is not on the allowlist",
                full,
                event,
            )
        stub = self.stubs.get(glob)
        if stub is None:
            stub = self.stubs[glob] = _make_stub(self, glob)
        return stub

    def extension(self, code: int) -> type:
        """An EXT opcode (pure-Python run only): names whatever the loading process registered."""
        self.issue(
            "pickle.extension-code",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"EXT code {code} names a global through the loading process's copyreg registry, "
            "which cannot be known statically",
            f"?ext:{code}",
            None,
        )
        glob = Global("<extension>", str(code))
        stub = self.stubs.get(glob)
        if stub is None:
            stub = self.stubs[glob] = _make_stub(self, glob)
        return stub

    # calls
    def call(self, glob: Global, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
        k = self._event("call")
        self.result.calls += 1
        call = Call(glob, (args, kwargs) if kwargs else args, self.reader.pos)
        if is_loads_like(glob.module, glob.name) and args:
            payload = _bytes_of(args[0])
            if payload is not None:
                self.result.nested.append(Nested(k, payload, glob.full))
        return _Value(self, call)

    def computed_call(self, func: Call | Persistent, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
        from modelgate.scan import pickle_ops

        k = self._event("call")
        self.result.calls += 1
        shown = describe(func)
        self.issue(
            "pickle.computed-call",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"calls {shown}: a callable computed while loading (a gadget chain)",
            shown if isinstance(func, Call) else None,
            (pickle_ops.CALL_OPS, k),
        )
        return _Value(self, Call(func, args, self.reader.pos))

    def persistent(self, pid: object) -> object:
        self._event("persid")
        record = symbolic(pid)
        self.result.persistent_ids.append(record)
        return _Value(self, Persistent(record))

    # BUILD
    def build_on_global(self, glob: Global) -> None:
        from modelgate.scan import pickle_ops

        k = self._event("build")
        self.issue(
            "pickle.build-on-global",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"BUILD sets attributes on {glob.full} itself (attribute injection into a class or module)",
            glob.full,
            (pickle_ops.BUILD_OPS, k),
        )

    def build(self, target: Call | Persistent, state: object) -> None:
        self._event("build")
        if not isinstance(target, Call):
            return
        target.state = symbolic(state)
        if isinstance(target.func, Global) and target.func.full == _JOBLIB_WRAPPER:
            self._joblib_array(target.state)

    def _joblib_array(self, state: object) -> None:
        """Step over the array bytes joblib reads straight from the file after the wrapper's BUILD."""
        if not self.exact:
            raise _NeedExactPositions
        extent = joblib_arrays.array_extent(state)  # ValueError: the stream is malformed
        self.result.joblib_arrays += 1
        reader = self.reader
        before = reader.pos
        if extent.pickled:  # joblib calls pickle.load on the file: a nested stream, scanned in place
            inner = trace(self.data, before, depth=self.depth + 1)
            self.result.calls += inner.calls
            self.result.plausible_globals += inner.plausible_globals
            self.result.issues.extend(inner.issues)
            self.result.globals.extend(g for g in inner.globals if g not in self.seen_globals)
            self.result.nested.extend(inner.nested)
            if not inner.ok:
                raise ValueError(f"joblib object array: {inner.error}")
            after = inner.end
        else:
            after = before
            if extent.aligned:
                if after >= reader.size:
                    raise ValueError("joblib array: padding length missing")
                after += 1 + reader.data[after]
            after += extent.nbytes
            if after > reader.size:
                raise ValueError(f"joblib array of {extent.nbytes} bytes runs past the end")
        reader.pos = after
        self.result.skips[before] = after


def _resolve(module: str, name: str) -> tuple[Global, Verdict]:
    """The global a loader resolves, and the worst verdict over the names it may resolve.

    Loaders map Python 2 names (``__builtin__``, ``copy_reg``) for protocols < 3 and not
    above; the stream can switch protocol, so a name under a module that also exists in
    Python 3 counts both ways (``socket``, ``itertools``, ``urllib``).
    """
    mapped_module, mapped_name = module, name
    if (module, name) in _compat_pickle.NAME_MAPPING:
        mapped_module, mapped_name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        mapped_module = _compat_pickle.IMPORT_MAPPING[module]
    mapped = Global(mapped_module, mapped_name)
    verdict = classify(mapped_module, mapped_name)
    if mapped == Global(module, name) or not _importable_top(module):
        return mapped, verdict
    raw_verdict = classify(module, name)
    if _VERDICT_RANK[raw_verdict] > _VERDICT_RANK[verdict]:
        return Global(module, name), raw_verdict
    return mapped, verdict


@lru_cache(maxsize=4096)
def _importable_top(module: str) -> bool:
    """Whether the top-level package of ``module`` exists here (found, never imported)."""
    top = module.split(".", 1)[0]
    if not top.isidentifier():
        return False
    if top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def symbolic(value: object, budget: int = _MAX_SYMBOLIC_NODES) -> object:
    """A traced value with stubs turned back into :class:`Global` / :class:`Call` records.

    Each container is converted once (a pickle shares objects through its memo: ``[x, x]`` of
    ``[y, y]`` of ... would otherwise expand to 2**depth copies), cycles stay cycles' placeholders,
    and at most ``budget`` containers are converted (the rest are opaque)."""
    return _Symbolizer(budget).convert(value, 0)


class _Symbolizer:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.done: dict[int, object] = {}

    def convert(self, value: object, depth: int) -> object:
        if isinstance(value, _StubMeta):
            return value._glob
        if isinstance(value, _Value):
            return value.call
        if not isinstance(value, tuple | list | dict):
            return value
        known = self.done.get(id(value))
        if known is not None:
            return known
        if depth > _MAX_SYMBOLIC_DEPTH or self.budget <= 0:
            return Opaque("a deeply nested value")
        self.budget -= 1
        self.done[id(value)] = Opaque("a value that contains itself")  # until converted
        out: object
        if isinstance(value, tuple):
            out = tuple(self.convert(v, depth + 1) for v in value)
        elif isinstance(value, list):
            out = [self.convert(v, depth + 1) for v in value]
        else:
            converted: dict[object, object] = {}
            for key, item in value.items():
                new_key = key if isinstance(key, _Value | _StubMeta) else self.convert(key, depth + 1)
                try:
                    converted[new_key] = self.convert(item, depth + 1)
                except TypeError:  # a key that became unhashable (a list in a tuple): not needed
                    continue
            out = converted
        self.done[id(value)] = out
        return out


def _bytes_of(value: object, depth: int = 0) -> bytes | None:
    """The bytes a value handed to a loads-like callable stands for, where they are static."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1", "replace")
    if isinstance(value, _Value) and isinstance(value.call, Call) and depth < 4:
        call = value.call
        args = call.args if isinstance(call.args, tuple) else ()
        if isinstance(call.func, Global) and call.func.full == "_codecs.encode" and args:
            codec = args[1] if len(args) > 1 else "utf-8"
            if isinstance(codec, str) and codec.lower() in _CODEC_FOLD and isinstance(args[0], str):
                return args[0].encode(codec, "replace")
        if args:  # e.g. io.BytesIO(b"...") handed to torch.load
            return _bytes_of(args[0], depth + 1)
    return None


# -- the two unpicklers -----------------------------------------------------------------------
class _CUnpickler(pickle.Unpickler):
    """CPython's C unpickler (what torch.load, pickle.load and numpy.load run)."""

    def __init__(self, file: _PlainReader, recorder: _Trace) -> None:
        super().__init__(file, encoding="latin1")
        self._recorder = recorder

    def find_class(self, module_name: str, global_name: str, /) -> type:
        return self._recorder.find_class(module_name, global_name)

    def persistent_load(self, pid: object, /) -> object:
        return self._recorder.persistent(pid)


class _PyUnpickler(pickle._Unpickler):
    """CPython's pure-Python unpickler (what joblib.load runs), with an opcode budget."""

    def __init__(self, file: _PlainReader, recorder: _Trace, budget: int) -> None:
        super().__init__(file, encoding="latin1")
        self._recorder = recorder
        self._budget = budget

    def find_class(self, module: str, name: str) -> type:
        return self._recorder.find_class(module, name)

    def persistent_load(self, pid: object) -> object:
        return self._recorder.persistent(pid)

    def get_extension(self, code: int) -> None:
        self.append(self._recorder.extension(code))

    def _load_bytearray8(self) -> None:
        """BYTEARRAY8 without allocating the length a 9-byte header claims (the stock one zeroes it
        first: a 20-byte file would take the scanner's memory)."""
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._recorder.reader.size:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {length} bytes is longer than the data")
        self.append(bytearray(self.read(length)))

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8  # type: ignore[assignment]

    def load(self) -> object:
        """``pickle._Unpickler.load`` (CPython 3.11) with an opcode budget."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[list[object]] = []
        self.stack: list[object] = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        budget = self._budget
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                budget -= 1
                if budget < 0:
                    raise _OpBudget
                dispatch[key[0]](self)  # type: ignore[arg-type]  # typeshed types it for Unpickler
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value


# -- running them -----------------------------------------------------------------------------
def _c_available() -> bool:
    """The C unpickler consults copyreg's extension registry and cache itself: use it only while
    they are empty (a fresh process; modelgate never registers or loads extension codes)."""
    return not (copyreg._extension_registry or copyreg._extension_cache)  # type: ignore[attr-defined]


def _run_c(
    data: Data, start: int, *, exact: bool, depth: int, guard: bool = True
) -> tuple[WalkResult, _Trace, BaseException | None]:
    result = WalkResult(start=start)
    reader: _PlainReader = _PlainReader(data, start, guard=guard) if exact else _PeekReader(data, start, guard=guard)
    recorder = _Trace(data, result, reader, exact=exact, depth=depth)
    error: BaseException | None = None
    try:
        value = _CUnpickler(reader, recorder).load()
        result.ok = True
        result.value = _keepable(value)
    except (_NeedExactPositions, _NeedMemoCheck):
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - any failure is a finding
        error = exc
    result.end = reader.pos
    return result, recorder, error


def _memo_bomb(data: Data, start: int, budget: int, depth: int, *, exact: bool) -> tuple[int, str | None] | None:
    """Whether the C unpickler must not read this stream: None if it may, else (the memo index that
    makes it a memory bomb, or -1 when that cannot be told; what the flat reading found wrong).

    The flat opcode index says it exactly when it reads the stream to its STOP. Where it cannot
    (frames the readers disagree on, joblib's raw array bytes), the pure-Python reading (a dict
    memo: no bomb) decides: what it stores is what a C reading of the same, agreed stream stores.
    If neither reads the stream to its end, the C unpickler stops where the flat reading does
    (it reads the same opcodes) unless frames or joblib's skipped bytes make them part: then it
    is not run at all.
    """
    from modelgate.scan import pickle_ops

    index = pickle_ops.index(data, start, puts=True)
    if index.ok:
        largest = pickle_ops.largest_put(data, index)
    else:
        _result, error, largest = _run_python(data, start, budget, depth)
        if error is not None:
            if exact or index.frame_problem is not None:
                return -1, index.frame_problem
            largest = pickle_ops.largest_put(data, index)
    return (largest, None) if largest >= MAX_C_MEMO_INDEX else None


def _run_c_guarded(
    data: Data, start: int, *, exact: bool, depth: int, budget: int
) -> tuple[WalkResult, BaseException | None]:
    """The C run, unless a memo store with a huge index shows up in what it reads."""
    try:
        result, _recorder, error = _run_c(data, start, exact=exact, depth=depth)
    except _NeedMemoCheck:
        verdict = _memo_bomb(data, start, budget, depth, exact=exact)
        if verdict is not None:
            raise _MemoBomb(*verdict) from None
        result, _recorder, error = _run_c(data, start, exact=exact, depth=depth, guard=False)
    return result, error


class _MemoBomb(Exception):
    def __init__(self, index: int, frame_problem: str | None) -> None:
        super().__init__(index)
        self.index = index
        self.frame_problem = frame_problem


def _run_python(data: Data, start: int, budget: int, depth: int) -> tuple[WalkResult, BaseException | None, int]:
    """The pure-Python reading: its result, its error, and the largest memo index it stored."""
    result = WalkResult(start=start)
    reader = _PlainReader(data, start)
    recorder = _Trace(data, result, reader, exact=True, depth=depth)
    unpickler = _PyUnpickler(reader, recorder, budget)
    error: BaseException | None = None
    try:
        value = unpickler.load()
        result.ok = True
        result.value = _keepable(value)
    except _OpBudget:
        result.limit_hit = True
        error = RuntimeError(f"more than {budget} opcodes for the pure-Python unpickler")
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - any failure is a finding
        error = exc
    result.end = reader.pos
    memo: dict[object, object] = unpickler.memo  # type: ignore[attr-defined]
    largest = max((k for k in memo if isinstance(k, int)), default=0)
    return result, error, largest


def _keepable(value: object) -> object:
    if isinstance(value, int | str | bytes | float | bool) or value is None:
        return value
    if isinstance(value, list) and len(value) <= _MAX_KEPT_VALUE:
        return symbolic(value)
    if isinstance(value, tuple | dict) and len(value) <= _MAX_KEPT_VALUE:
        return symbolic(value)
    return symbolic(value) if isinstance(value, _Value | _StubMeta) else None


def _message(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


_GC_LOCK = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while unpicklers build millions of small containers: the
    collector's passes over them, not the unpickling, would take three quarters of the time.
    Counted, so scans on several threads switch it back only when the last one is done."""
    global _gc_pausers, _gc_was_enabled
    with _GC_LOCK:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def trace(data: Data, start: int = 0, *, python_budget: int = 2_000_000, depth: int = 0) -> WalkResult:
    """Trace the pickle at ``start`` as the C unpickler reads it, and as the Python one does where
    the C one refuses it. The result's ``ok`` means both agree it is a complete stream."""
    with _gc_paused():
        return _trace(data, start, python_budget, depth)


def _trace(data: Data, start: int, python_budget: int, depth: int) -> WalkResult:
    if _c_available():
        try:
            try:
                result, c_error = _run_c_guarded(data, start, exact=False, depth=depth, budget=python_budget)
            except _NeedExactPositions:
                result, c_error = _run_c_guarded(data, start, exact=True, depth=depth, budget=python_budget)
        except _MemoBomb as bomb:
            return _python_only(data, start, python_budget, depth, bomb)
        if c_error is None:
            return result
        fallback, py_error, _largest = _run_python(data, start, python_budget, depth)
        _merge(result, fallback)
        result.ok = False
        result.limit_hit = fallback.limit_hit
        if py_error is None:
            result.error = f"the C unpickler refuses this stream ({_message(c_error)}) but the pure-Python one reads it"
        else:
            result.error = _message(c_error)
        result.error_offset = result.end
        return result
    result, py_error, _largest = _run_python(data, start, python_budget, depth)
    if py_error is not None:
        result.ok = False
        result.error = _message(py_error)
        result.error_offset = result.end
    return result


def _python_only(data: Data, start: int, budget: int, depth: int, bomb: _MemoBomb) -> WalkResult:
    """A stream the C unpickler must not read: its memo would take the machine's memory, or the
    readings part before a store that might. The Python reading gives its globals and calls; the
    stream is never ``ok``."""
    result, py_error, _largest = _run_python(data, start, budget, depth)
    result.ok = False
    if bomb.index >= 0:
        why = f"stores into memo index {bomb.index}: the C unpickler would allocate {16 * bomb.index:,} bytes"
        result.issues.append(Issue("pickle.memo-bomb", Category.MALFORMED, Severity.HIGH, f"the pickle {why}", start))
    else:
        why = "is not read by the C unpickler: its readings part where a memo store could take its memory"
        if bomb.frame_problem is not None:
            result.issues.append(
                Issue(
                    "pickle.ambiguous-frames",
                    Category.MALFORMED,
                    Severity.HIGH,
                    f"loaders read this pickle differently: {bomb.frame_problem}",
                    start,
                )
            )
    result.error = f"the pickle {why}" if py_error is None else f"{_message(py_error)} (the pickle {why})"
    result.error_offset = start
    return result


def _merge(into: WalkResult, other: WalkResult) -> None:
    """Add what the pure-Python run saw beyond the C run (its prefix is the same stream)."""
    known = {(i.rule_id, i.global_name, i.message) for i in into.issues}
    into.issues.extend(i for i in other.issues if (i.rule_id, i.global_name, i.message) not in known)
    into.globals.extend(g for g in other.globals if g not in set(into.globals))
    into.calls = max(into.calls, other.calls)
    into.plausible_globals = max(into.plausible_globals, other.plausible_globals)
    into.nested.extend(other.nested[len(into.nested) :])
    into.joblib_arrays = max(into.joblib_arrays, other.joblib_arrays)
    if len(other.persistent_ids) > len(into.persistent_ids):
        into.persistent_ids = other.persistent_ids


__all__ = ["Call", "Global", "Issue", "Nested", "Opaque", "Persistent", "WalkResult", "describe", "symbolic", "trace"]
