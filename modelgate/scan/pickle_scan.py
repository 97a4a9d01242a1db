"""A symbolic walk of pickle opcodes that resolves every global without executing anything.

The walker keeps a symbolic stack and memo, so ``STACK_GLOBAL`` operands fetched
through ``PUT``/``GET`` indirection still resolve to a name, calls on computed
objects are seen for what they are, and byte strings handed to a ``loads``-like
callable come back as nested payloads to scan. Malformed input never raises: the
walk stops and says where (the offset of the opcode that failed).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from modelgate.scan import joblib_arrays
from modelgate.scan.allowlist import STANDARD_EXTENSIONS, Verdict, classify, is_loads_like
from modelgate.scan.findings import Category, Severity

Data = bytes | memoryview
Handler = Callable[["PickleWalker", int], int]

_NL = re.compile(b"\n")
_MAX_STACK = 10_000_000
_MAX_TEXT_DECODE = 1 << 20  # longer strings stay lazy: no module or attribute name is that long
_MAX_LONG_BYTES = 1 << 16
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_CODEC_FOLD = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"}


class _Mark:
    """The MARK sentinel on the symbolic stack."""


MARK = _Mark()


@dataclass(frozen=True)
class Global:
    module: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """The object a REDUCE, NEWOBJ, INST or OBJ produced (the call itself is never made)."""

    func: object
    args: object
    offset: int
    state: object = None


@dataclass(eq=False)
class Persistent:
    pid: object


@dataclass(eq=False)
class Blob:
    """Bytes that sit in the scanned data at ``[start, end)``: never copied unless needed."""

    start: int
    end: int


@dataclass(eq=False)
class LongText:
    """A string too long to be a name; decoded only if it flows into a nested pickle."""

    start: int
    end: int
    encoding: str


@dataclass(eq=False)
class Opaque:
    what: str


@dataclass(eq=False)
class SymSet:
    items: list[object] = field(default_factory=list)


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
    ops: int = 0
    issues: list[Issue] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    persistent_ids: list[object] = field(default_factory=list)
    nested: list[Nested] = field(default_factory=list)
    joblib_arrays: int = 0


class _Bad(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Limit(_Bad):
    pass


class _Stop(Exception):
    def __init__(self, value: object, end: int) -> None:
        super().__init__("STOP")
        self.value = value
        self.end = end


def describe(value: object) -> str:
    """A short human description of a symbolic value (for messages)."""
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Call):
        return f"the result of calling {describe(value.func)}"
    if isinstance(value, Persistent):
        return "a persistent object"
    if isinstance(value, Opaque):
        return value.what
    return type(value).__name__


class PickleWalker:
    """Walk one pickle (up to its STOP) starting at ``start``; see :func:`walk`."""

    def __init__(self, data: Data, *, max_ops: int) -> None:
        self.data = data
        self.size = len(data)
        self.max_ops = max_ops
        self.stack: list[object] = []
        self.metastack: list[list[object]] = []
        self.memo: dict[int, object] = {}
        self.result = WalkResult(start=0)
        self._op_offset = 0

    # -- reading -------------------------------------------------------------------------------
    def _take(self, pos: int, n: int) -> memoryview | bytes:
        if n < 0 or pos + n > self.size:
            raise _Bad(f"truncated: needs {n} bytes at offset {pos}", self._op_offset)
        return self.data[pos : pos + n]

    def _line(self, pos: int) -> tuple[bytes, int]:
        match = _NL.search(self.data, pos)
        if match is None:
            raise _Bad("truncated: text argument without a newline", self._op_offset)
        return bytes(self.data[pos : match.start()]), match.end()

    def _unpack(self, fmt: str, pos: int) -> tuple[int, int]:
        n = struct.calcsize(fmt)
        if pos + n > self.size:
            raise _Bad(f"truncated: needs {n} bytes at offset {pos}", self._op_offset)
        return int(struct.unpack_from(fmt, self.data, pos)[0]), pos + n

    # -- stack -----------------------------------------------------------------------------------
    def _push(self, value: object) -> None:
        if len(self.stack) >= _MAX_STACK:
            raise _Limit(f"symbolic stack deeper than {_MAX_STACK}", self._op_offset)
        self.stack.append(value)

    def _pop(self) -> object:
        if not self.stack:
            raise _Bad("stack underflow", self._op_offset)
        value = self.stack.pop()
        if value is MARK:
            raise _Bad("MARK where a value was expected", self._op_offset)
        return value

    def _top(self) -> object:
        if not self.stack:
            raise _Bad("stack underflow", self._op_offset)
        return self.stack[-1]

    def _pop_mark(self) -> list[object]:
        if not self.metastack:
            raise _Bad("no MARK on the stack", self._op_offset)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    # -- the walk --------------------------------------------------------------------------------
    def walk(self, start: int) -> WalkResult:
        result = self.result = WalkResult(start=start)
        pos = start
        handlers = _HANDLERS
        data = self.data
        size = self.size
        try:
            while True:
                if pos >= size:
                    raise _Bad("truncated: the stream ends before STOP", pos)
                result.ops += 1
                if result.ops > self.max_ops:
                    raise _Limit(f"more than {self.max_ops} opcodes", pos)
                self._op_offset = pos
                op = data[pos]
                handler = handlers.get(op)
                if handler is None:
                    raise _Bad(f"invalid opcode 0x{op:02x}", pos)
                pos = handler(self, pos + 1)
        except _Stop as stop:
            result.ok = True
            result.value = stop.value
            result.end = stop.end
        except _Bad as bad:
            result.error = bad.message
            result.error_offset = bad.offset
            result.limit_hit = isinstance(bad, _Limit)
            result.end = bad.offset
        except (RecursionError, MemoryError, ValueError, OverflowError, UnicodeDecodeError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.error_offset = self._op_offset
            result.end = self._op_offset
        return result

    # -- simple values -------------------------------------------------------------------------
    def _const(self, value: object, pos: int) -> int:
        if isinstance(value, dict | list):
            value = type(value)()  # a fresh mutable container per opcode
        elif isinstance(value, SymSet):
            value = SymSet()
        self._push(value)
        return pos

    def _const_fmt(self, fmt: str, pos: int) -> int:
        value, pos = self._unpack(fmt, pos)
        self._push(value)
        return pos

    def _int(self, pos: int) -> int:
        line, pos = self._line(pos)
        if line == b"00":
            self._push(False)
        elif line == b"01":
            self._push(True)
        else:
            self._push(int(line))
        return pos

    def _long(self, pos: int) -> int:
        line, pos = self._line(pos)
        self._push(int(line[:-1] if line.endswith(b"L") else line))
        return pos

    def _float(self, pos: int) -> int:
        line, pos = self._line(pos)
        self._push(float(line))
        return pos

    def _binfloat(self, pos: int) -> int:
        raw = self._take(pos, 8)
        self._push(struct.unpack(">d", raw)[0])
        return pos + 8

    def _long_bin(self, fmt: str, pos: int) -> int:
        n, pos = self._unpack(fmt, pos)
        if n < 0:
            raise _Bad("negative LONG4 length", self._op_offset)
        raw = self._take(pos, n)
        self._push(int.from_bytes(raw, "little", signed=True) if n <= _MAX_LONG_BYTES else Opaque("a huge integer"))
        return pos + n

    def _string(self, pos: int) -> int:
        line, pos = self._line(pos)
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise _Bad("STRING argument is not quoted", self._op_offset)
        decoded = codecs.escape_decode(line[1:-1])[0]
        self._push(decoded.decode("latin-1"))
        return pos

    def _binstring(self, fmt: str, pos: int) -> int:
        n, pos = self._unpack(fmt, pos)
        if n < 0:
            raise _Bad("negative BINSTRING length", self._op_offset)
        self._take(pos, n)
        self._push(self._text(pos, pos + n, "latin-1"))
        return pos + n

    def _unicode(self, pos: int) -> int:
        line, pos = self._line(pos)
        self._push(line.decode("raw-unicode-escape"))
        return pos

    def _binunicode(self, fmt: str, pos: int) -> int:
        n, pos = self._unpack(fmt, pos)
        self._take(pos, n)
        self._push(self._text(pos, pos + n, "utf-8"))
        return pos + n

    def _text(self, start: int, end: int, encoding: str) -> object:
        if end - start > _MAX_TEXT_DECODE:
            return LongText(start, end, encoding)
        return str(self.data[start:end], encoding, "surrogatepass" if encoding == "utf-8" else "strict")

    def _binbytes(self, fmt: str, pos: int) -> int:
        n, pos = self._unpack(fmt, pos)
        self._take(pos, n)
        self._push(Blob(pos, pos + n))
        return pos + n

    # -- stack and memo --------------------------------------------------------------------------
    def _mark(self, pos: int) -> int:
        self.metastack.append(self.stack)
        self.stack = []
        return pos

    def _stop(self, pos: int) -> int:
        raise _Stop(self._pop(), pos)

    def _pop_op(self, pos: int) -> int:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()
        return pos

    def _pop_mark_op(self, pos: int) -> int:
        self._pop_mark()
        return pos

    def _dup(self, pos: int) -> int:
        self._push(self._top())
        return pos

    def _put(self, index: int) -> None:
        if index < 0:
            raise _Bad("negative memo index", self._op_offset)
        self.memo[index] = self._top()

    def _put_line(self, pos: int) -> int:
        line, pos = self._line(pos)
        self._put(int(line))
        return pos

    def _put_fmt(self, fmt: str, pos: int) -> int:
        index, pos = self._unpack(fmt, pos)
        self._put(index)
        return pos

    def _memoize(self, pos: int) -> int:
        self.memo[len(self.memo)] = self._top()
        return pos

    def _get(self, index: int) -> None:
        if index not in self.memo:
            raise _Bad(f"memo key {index} was never stored", self._op_offset)
        self._push(self.memo[index])

    def _get_line(self, pos: int) -> int:
        line, pos = self._line(pos)
        self._get(int(line))
        return pos

    def _get_fmt(self, fmt: str, pos: int) -> int:
        index, pos = self._unpack(fmt, pos)
        self._get(index)
        return pos

    def _frame(self, pos: int) -> int:
        length, pos = self._unpack("<Q", pos)
        if pos + length > self.size:
            raise _Bad(f"FRAME of {length} bytes runs past the end", self._op_offset)
        return pos

    def _proto(self, pos: int) -> int:
        proto, pos = self._unpack("<B", pos)
        if proto > 5:
            raise _Bad(f"unsupported pickle protocol {proto}", self._op_offset)
        self.result.proto = proto
        return pos

    # -- containers ------------------------------------------------------------------------------
    def _tuple(self, pos: int) -> int:
        self._push(tuple(self._pop_mark()))
        return pos

    def _tuple_n(self, n: int, pos: int) -> int:
        if len(self.stack) < n or any(v is MARK for v in self.stack[-n:]):
            raise _Bad("stack underflow", self._op_offset)
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self._push(items)
        return pos

    def _list(self, pos: int) -> int:
        self._push(self._pop_mark())
        return pos

    def _dict(self, pos: int) -> int:
        items = self._pop_mark()
        target: dict[object, object] = {}
        self._set_pairs(target, items)
        self._push(target)
        return pos

    def _set_pairs(self, target: object, items: list[object]) -> None:
        if len(items) % 2:
            raise _Bad("odd number of items for a dict", self._op_offset)
        if isinstance(target, dict):
            for i in range(0, len(items), 2):
                try:
                    target[items[i]] = items[i + 1]
                except TypeError:
                    continue  # an unhashable key: its value is not needed for any decision

    def _setitem(self, pos: int) -> int:
        value = self._pop()
        key = self._pop()
        self._set_pairs(self._top(), [key, value])
        return pos

    def _setitems(self, pos: int) -> int:
        items = self._pop_mark()
        self._set_pairs(self._top(), items)
        return pos

    def _append(self, pos: int) -> int:
        value = self._pop()
        target = self._top()
        if isinstance(target, list):
            target.append(value)
        return pos

    def _appends(self, pos: int) -> int:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, list):
            target.extend(items)
        return pos

    def _additems(self, pos: int) -> int:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, SymSet):
            target.items.extend(items)
        return pos

    def _frozenset(self, pos: int) -> int:
        self._push(SymSet(self._pop_mark()))
        return pos

    # -- globals ---------------------------------------------------------------------------------
    def _resolve(self, module: str, name: str, via: str) -> Global:
        if self.result.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        glob = Global(module, name)
        self._classify(glob, via, self._op_offset)
        return glob

    def _classify(self, glob: Global, via: str, offset: int) -> None:
        full = glob.full
        self.result.globals.append(full)
        verdict = classify(glob.module, glob.name)
        if verdict is Verdict.SAFE:
            return
        if verdict is Verdict.DANGEROUS:
            self._issue(
                "pickle.dangerous-global",
                Category.DANGEROUS,
                Severity.CRITICAL,
                f"{via} imports {full}, a known code-execution, file or network primitive",
                offset,
                full,
                definite=True,
            )
        elif verdict is Verdict.CODE:
            self._issue(
                "pickle.torchscript-class",
                Category.CODE,
                Severity.HIGH,
                f"{via} imports {full}, a class compiled from TorchScript code",
                offset,
                full,
            )
        else:
            self._issue(
                "pickle.unknown-global",
                Category.UNKNOWN,
                Severity.HIGH,
                f"{via} imports {full}, which is not on the allowlist",
                offset,
                full,
            )

    def _issue(
        self,
        rule_id: str,
        category: Category,
        severity: Severity,
        message: str,
        offset: int,
        global_name: str | None = None,
        *,
        definite: bool = False,
    ) -> None:
        self.result.issues.append(Issue(rule_id, category, severity, message, offset, global_name, definite))

    def _global(self, pos: int) -> int:
        module, pos = self._line(pos)
        name, pos = self._line(pos)
        self._push(self._resolve(module.decode("utf-8"), name.decode("utf-8"), "GLOBAL"))
        return pos

    def _stack_global(self, pos: int) -> int:
        name = self._pop()
        module = self._pop()
        if isinstance(module, str) and isinstance(name, str):
            self._push(self._resolve(module, name, "STACK_GLOBAL"))
            return pos
        shown = f"{describe(module)}.{describe(name)}"
        self._issue(
            "pickle.unresolved-global",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"STACK_GLOBAL operands cannot be resolved statically ({shown})",
            self._op_offset,
            f"?{shown}",
        )
        self._push(Opaque("an unresolved global"))
        return pos

    def _ext(self, fmt: str, pos: int) -> int:
        code, pos = self._unpack(fmt, pos)
        if code in STANDARD_EXTENSIONS:
            module, name = STANDARD_EXTENSIONS[code]
            self._push(self._resolve(module, name, f"EXT code {code}"))
            return pos
        self._issue(
            "pickle.extension-code",
            Category.DANGEROUS,
            Severity.CRITICAL,
            f"EXT code {code} is not in the standard copyreg registry: the global it names is decided "
            "by whatever the loading process registered",
            self._op_offset,
            f"?ext:{code}",
        )
        self._push(Opaque(f"extension code {code}"))
        return pos

    # -- calls -----------------------------------------------------------------------------------
    def _call(self, func: object, args: object, kind: str) -> Call:
        offset = self._op_offset
        if isinstance(func, Global):
            self.result.calls += 1
            if is_loads_like(func.module, func.name):
                self._nested_payload(func, args, offset)
        elif isinstance(func, Opaque):
            self.result.calls += 1  # an EXT code or unresolved global: already reported
        else:
            self._issue(
                "pickle.computed-call",
                Category.DANGEROUS,
                Severity.CRITICAL,
                f"{kind} calls {describe(func)}: a callable computed while loading (a gadget chain)",
                offset,
                describe(func) if isinstance(func, Call) else None,
            )
        return Call(func, args, offset)

    def _reduce(self, pos: int) -> int:
        args = self._pop()
        func = self._pop()
        self._push(self._call(func, args, "REDUCE"))
        return pos

    def _newobj(self, pos: int) -> int:
        args = self._pop()
        cls = self._pop()
        self._push(self._call(cls, args, "NEWOBJ"))
        return pos

    def _newobj_ex(self, pos: int) -> int:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        self._push(self._call(cls, (args, kwargs), "NEWOBJ_EX"))
        return pos

    def _inst(self, pos: int) -> int:
        module, pos = self._line(pos)
        name, pos = self._line(pos)
        args = self._pop_mark()
        glob = self._resolve(module.decode("utf-8"), name.decode("utf-8"), "INST")
        self._push(self._call(glob, tuple(args), "INST"))
        return pos

    def _obj(self, pos: int) -> int:
        items = self._pop_mark()
        if not items:
            raise _Bad("OBJ without a class", self._op_offset)
        self._push(self._call(items[0], tuple(items[1:]), "OBJ"))
        return pos

    def _persid(self, pos: int) -> int:
        line, pos = self._line(pos)
        pid = line.decode("ascii", "replace")
        self.result.persistent_ids.append(pid)
        self._push(Persistent(pid))
        return pos

    def _binpersid(self, pos: int) -> int:
        pid = self._pop()
        self.result.persistent_ids.append(pid)
        self._push(Persistent(pid))
        return pos

    def _build(self, pos: int) -> int:
        state = self._pop()
        target = self._top()
        if isinstance(target, Global):
            self._issue(
                "pickle.build-on-global",
                Category.DANGEROUS,
                Severity.CRITICAL,
                f"BUILD sets attributes on {target.full} itself (attribute injection into a class or module)",
                self._op_offset,
                target.full,
            )
            return pos
        if isinstance(target, Call):
            target.state = state
            if isinstance(target.func, Global) and target.func.full == _JOBLIB_WRAPPER:
                return self._joblib_array(state, pos)
        return pos

    def _joblib_array(self, state: object, pos: int) -> int:
        """Step over the array bytes joblib writes right after a NumpyArrayWrapper's BUILD."""
        try:
            extent = joblib_arrays.array_extent(state)
        except ValueError as exc:
            raise _Bad(f"joblib array: {exc}", self._op_offset) from None
        self.result.joblib_arrays += 1
        if extent.pickled:
            sub = PickleWalker(self.data, max_ops=max(self.max_ops - self.result.ops, 1))
            sub.result.proto = self.result.proto
            inner = sub.walk(pos)
            self.result.ops += inner.ops
            self.result.calls += inner.calls
            self.result.issues.extend(inner.issues)
            self.result.globals.extend(inner.globals)
            self.result.nested.extend(inner.nested)
            if not inner.ok:
                raise _Bad(f"joblib object array: {inner.error}", inner.error_offset or pos)
            return inner.end
        if extent.aligned:
            padding, pos = self._unpack("<B", pos)
            pos += padding
        if pos + extent.nbytes > self.size:
            raise _Bad(f"joblib array of {extent.nbytes} bytes runs past the end", self._op_offset)
        return pos + extent.nbytes

    def _nested_payload(self, func: Global, args: object, offset: int) -> None:
        payload = self._bytes_of(args[0] if isinstance(args, tuple) and args else None)
        if payload is not None:
            self.result.nested.append(Nested(offset, payload, func.full))

    def _bytes_of(self, value: object, depth: int = 0) -> Data | None:
        """The concrete bytes a symbolic value stands for, where that is static."""
        if isinstance(value, Blob):
            return self.data[value.start : value.end]
        if isinstance(value, str):
            return value.encode("latin-1", "replace")
        if isinstance(value, LongText):
            return str(self.data[value.start : value.end], value.encoding, "replace").encode("latin-1", "replace")
        if isinstance(value, Call) and isinstance(value.func, Global) and depth < 4:
            args = value.args if isinstance(value.args, tuple) else ()
            if value.func.full == "_codecs.encode" and args:
                codec = args[1] if len(args) > 1 else "utf-8"
                text = args[0]
                if isinstance(codec, str) and codec.lower() in _CODEC_FOLD:
                    if isinstance(text, LongText):
                        text = str(self.data[text.start : text.end], text.encoding, "replace")
                    if isinstance(text, str):
                        return text.encode(codec, "replace")
            if args:  # e.g. io.BytesIO(b"...") handed to torch.load
                return self._bytes_of(args[0], depth + 1)
        return None


def _table() -> dict[int, Handler]:
    w = PickleWalker
    t: dict[bytes, Handler] = {
        b"(": w._mark,
        b".": w._stop,
        b"0": w._pop_op,
        b"1": w._pop_mark_op,
        b"2": w._dup,
        b"F": w._float,
        b"I": w._int,
        b"J": lambda s, p: s._const_fmt("<i", p),
        b"K": lambda s, p: s._const_fmt("<B", p),
        b"L": w._long,
        b"M": lambda s, p: s._const_fmt("<H", p),
        b"N": lambda s, p: s._const(None, p),
        b"P": w._persid,
        b"Q": w._binpersid,
        b"R": w._reduce,
        b"S": w._string,
        b"T": lambda s, p: s._binstring("<i", p),
        b"U": lambda s, p: s._binstring("<B", p),
        b"V": w._unicode,
        b"X": lambda s, p: s._binunicode("<I", p),
        b"a": w._append,
        b"b": w._build,
        b"c": w._global,
        b"d": w._dict,
        b"}": lambda s, p: s._const({}, p),
        b"e": w._appends,
        b"g": w._get_line,
        b"h": lambda s, p: s._get_fmt("<B", p),
        b"i": w._inst,
        b"j": lambda s, p: s._get_fmt("<I", p),
        b"l": w._list,
        b"]": lambda s, p: s._const([], p),
        b"o": w._obj,
        b"p": w._put_line,
        b"q": lambda s, p: s._put_fmt("<B", p),
        b"r": lambda s, p: s._put_fmt("<I", p),
        b"s": w._setitem,
        b"t": w._tuple,
        b")": lambda s, p: s._const((), p),
        b"u": w._setitems,
        b"G": w._binfloat,
        b"\x80": w._proto,
        b"\x81": w._newobj,
        b"\x82": lambda s, p: s._ext("<B", p),
        b"\x83": lambda s, p: s._ext("<H", p),
        b"\x84": lambda s, p: s._ext("<i", p),
        b"\x85": lambda s, p: s._tuple_n(1, p),
        b"\x86": lambda s, p: s._tuple_n(2, p),
        b"\x87": lambda s, p: s._tuple_n(3, p),
        b"\x88": lambda s, p: s._const(True, p),
        b"\x89": lambda s, p: s._const(False, p),
        b"\x8a": lambda s, p: s._long_bin("<B", p),
        b"\x8b": lambda s, p: s._long_bin("<i", p),
        b"B": lambda s, p: s._binbytes("<I", p),
        b"C": lambda s, p: s._binbytes("<B", p),
        b"\x8c": lambda s, p: s._binunicode("<B", p),
        b"\x8d": lambda s, p: s._binunicode("<Q", p),
        b"\x8e": lambda s, p: s._binbytes("<Q", p),
        b"\x8f": lambda s, p: s._const(SymSet(), p),
        b"\x90": w._additems,
        b"\x91": w._frozenset,
        b"\x92": w._newobj_ex,
        b"\x93": w._stack_global,
        b"\x94": w._memoize,
        b"\x95": w._frame,
        b"\x96": lambda s, p: s._binbytes("<Q", p),
        b"\x97": lambda s, p: s._const(Opaque("an out-of-band buffer"), p),
        b"\x98": lambda s, p: p,
    }
    return {key[0]: handler for key, handler in t.items()}


_HANDLERS = _table()
_OPCODE_BYTES = frozenset(_HANDLERS)


def walk(data: Data, start: int = 0, *, max_ops: int = 50_000_000) -> WalkResult:
    """Walk one pickle from ``start`` to its STOP; never raises on malformed input."""
    return PickleWalker(data, max_ops=max_ops).walk(start)


def first_opcode_ok(data: Data, start: int = 0) -> bool:
    """Whether the byte at ``start`` is a pickle opcode at all (cheap pre-check)."""
    return start < len(data) and data[start] in _OPCODE_BYTES
