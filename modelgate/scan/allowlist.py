"""Which pickle globals are safe, dangerous or unknown.

The decision is allowlist-first: only the globals that ordinary PyTorch state
dicts, checkpoints and NumPy arrays need are ``safe``. A short denylist of known
code-execution, file and network globals upgrades a non-safe global from
``unknown`` to ``dangerous`` so that reports say *why*, but never decides safety.
"""

from __future__ import annotations

from enum import StrEnum


def _words(text: str) -> list[str]:
    return text.split()


_TORCH_DTYPES = _words(
    "float16 float32 float64 bfloat16 complex32 complex64 complex128 bool uint8 uint16 uint32 uint64 "
    "int8 int16 int32 int64 qint8 quint8 qint32 quint4x2 quint2x4 bits1x8 bits2x4 bits4x2 bits8 bits16 "
    "float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 "
    "uint1 uint2 uint3 uint4 uint5 uint6 uint7 int1 int2 int3 int4 int5 int6 int7"
)
_TORCH_LAYOUTS = _words("strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn jagged")
_TORCH_MEMORY_FORMATS = _words("contiguous_format channels_last channels_last_3d preserve_format")
_TORCH_QSCHEMES = _words(
    "per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric per_channel_affine_float_qparams"
)
_STORAGE_KINDS = _words(
    "Double Float Half BFloat16 Long Int Short Char Byte Bool ComplexDouble ComplexFloat "
    "QInt8 QUInt8 QInt32 QUInt4x2 QUInt2x4"
)
_TENSOR_KINDS = _words("Double Float Half BFloat16 Long Int Short Char Byte Bool")
_REBUILD_FUNCTIONS = _words(
    "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter _rebuild_parameter_with_state "
    "_rebuild_qtensor _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage _rebuild_nested_tensor "
    "_rebuild_wrapper_subclass _rebuild_device_tensor_from_cpu_tensor _rebuild_device_tensor_from_numpy"
)
_NUMPY_DTYPE_CLASSES = _words(
    "Bool Int8 Int16 Int32 Int64 UInt8 UInt16 UInt32 UInt64 Byte UByte Short UShort Int UInt Long ULong "
    "LongLong ULongLong Float16 Float32 Float64 LongDouble Complex64 Complex128 CLongDouble Bytes Str Void "
    "DateTime64 TimeDelta64"
)


def _torch_safe() -> set[str]:
    names = {
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch._tensor._rebuild_from_type_v2",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        # TorchScript pickles build their lists and type tags through these pure helpers.
        "torch.jit._pickle.build_intlist",
        "torch.jit._pickle.build_tensorlist",
        "torch.jit._pickle.build_doublelist",
        "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensor_from_id",
        "torch.jit._pickle.restore_type_tag",
    }
    names |= {f"torch.{n}" for n in _TORCH_DTYPES + _TORCH_LAYOUTS + _TORCH_MEMORY_FORMATS + _TORCH_QSCHEMES}
    for prefix in ("torch", "torch.cuda"):
        names |= {f"{prefix}.{kind}Storage" for kind in _STORAGE_KINDS}
        names |= {f"{prefix}.{kind}Tensor" for kind in _TENSOR_KINDS}
    names |= {f"torch.sparse.{kind}Tensor" for kind in _TENSOR_KINDS}
    names |= {f"torch.cuda.sparse.{kind}Tensor" for kind in _TENSOR_KINDS}
    names |= {f"torch._utils.{fn}" for fn in _REBUILD_FUNCTIONS}
    return names


def _numpy_safe() -> set[str]:
    names = {"numpy.ndarray", "numpy.dtype"}
    for core in ("numpy.core", "numpy._core"):
        names |= {f"{core}.multiarray._reconstruct", f"{core}.multiarray.scalar", f"{core}.numeric._frombuffer"}
    names |= {f"numpy.dtypes.{kind}DType" for kind in _NUMPY_DTYPE_CLASSES}
    # Random generator state: the constructors look the bit generator up by name in a fixed table.
    names |= {
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
    }
    return names


SAFE_GLOBALS: frozenset[str] = frozenset(
    _torch_safe()
    | _numpy_safe()
    | {
        "collections.OrderedDict",
        "collections.Counter",
        "collections.defaultdict",
        # Constructors of plain values: they cannot run code or touch files.
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.complex",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.str",
        "builtins.tuple",
        "builtins.list",
        "builtins.dict",
        "builtins.range",
        # str -> bytes with a named codec: how protocol-2 pickles carry NumPy array bytes.
        "_codecs.encode",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "argparse.Namespace",
        "pathlib.PosixPath",
        "pathlib.PurePosixPath",
        "pathlib.WindowsPath",
        "pathlib.PureWindowsPath",
        # joblib's placeholder for an array whose raw bytes follow in the stream.
        "joblib.numpy_pickle.NumpyArrayWrapper",
    }
)

# Whole modules whose every global is a code-execution, process, file or network primitive.
_DANGEROUS_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "posixpath",
        "ntpath",
        "subprocess",
        "_posixsubprocess",
        "sys",
        "importlib",
        "runpy",
        "code",
        "codeop",
        "ctypes",
        "_ctypes",
        "cffi",
        "socket",
        "_socket",
        "ssl",
        "select",
        "selectors",
        "shutil",
        "pty",
        "tty",
        "webbrowser",
        "asyncio",
        "multiprocessing",
        "concurrent",
        "threading",
        "_thread",
        "signal",
        "pickle",
        "_pickle",
        "cPickle",
        "pickletools",
        "dill",
        "cloudpickle",
        "joblib",
        "shelve",
        "dbm",
        "marshal",
        "types",
        "functools",
        "pip",
        "setuptools",
        "distutils",
        "pkgutil",
        "zipimport",
        "site",
        "urllib",
        "urllib2",
        "http",
        "httplib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "poplib",
        "imaplib",
        "requests",
        "httpx",
        "aiohttp",
        "paramiko",
        "platform",
        "commands",
        "pdb",
        "bdb",
        "timeit",
        "trace",
        "profile",
        "cProfile",
        "doctest",
        "pydoc",
        "tkinter",
        "io",
        "_io",
        "tempfile",
        "fileinput",
        "linecache",
        "glob",
        "sqlite3",
        "mmap",
        "resource",
        "xmlrpc",
        "logging",
        "inspect",
        "gc",
        "torch.hub",
        "torch._C",
        "torch.ops",
        "torch.jit",
        "torch.cuda.memory",
        "torch.utils.cpp_extension",
        "torch.package",
        "numpy.testing",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.ctypeslib",
        "tensorflow.io",
        "tensorflow.python.platform.gfile",
        "keras.utils.get_file",
    }
)

# Single globals outside the modules above that run code, read/write files or load more pickles.
_DANGEROUS_GLOBALS = frozenset(
    {
        "builtins.eval",
        "builtins.exec",
        "builtins.execfile",
        "builtins.compile",
        "builtins.open",
        "builtins.file",
        "builtins.getattr",
        "builtins.setattr",
        "builtins.delattr",
        "builtins.__import__",
        "builtins.__build_class__",
        "builtins.globals",
        "builtins.locals",
        "builtins.vars",
        "builtins.input",
        "builtins.breakpoint",
        "builtins.help",
        "builtins.exit",
        "builtins.quit",
        "builtins.apply",
        "builtins.reload",
        "builtins.memoryview",
        "builtins.type",
        "builtins.super",
        "builtins.classmethod",
        "builtins.staticmethod",
        "builtins.property",
        "builtins.map",
        "builtins.filter",
        "operator.attrgetter",
        "operator.methodcaller",
        "operator.itemgetter",
        "operator.call",
        "copyreg._reconstructor",
        "torch.load",
        "torch.save",
        "torch.serialization.load",
        "torch.serialization._load",
        "torch.serialization.save",
        "torch.storage._load_from_bytes",
        "torch._weights_only_unpickler.load",
        "numpy.load",
        "numpy.loads",
        "numpy.save",
        "numpy.fromfile",
        "numpy.lib.npyio.load",
        "numpy.lib._npyio_impl.load",
        "numpy.lib.format.read_array",
        "numpy.core.multiarray.fromfile",
        "numpy._core.multiarray.fromfile",
        "numpy.memmap",
        "numpy.core.memmap.memmap",
        "numpy._core.memmap.memmap",
        "numpy.DataSource",
        "numpy.lib._datasource.DataSource",
    }
)

# Callables that unpickle their bytes argument: the bytes are scanned as a nested pickle.
LOADS_LIKE: frozenset[str] = frozenset(
    {
        "pickle.loads",
        "pickle.load",
        "_pickle.loads",
        "_pickle.load",
        "cPickle.loads",
        "dill.loads",
        "dill._dill.loads",
        "cloudpickle.loads",
        "joblib.load",
        "numpy.loads",
        "numpy.load",
        "torch.load",
        "torch.serialization.load",
        "torch.storage._load_from_bytes",
    }
)


class Verdict(StrEnum):
    SAFE = "safe"
    DANGEROUS = "dangerous"
    UNKNOWN = "unknown"
    CODE = "code"  # a TorchScript class compiled from the archive's own code/ members


def _module_matches(module: str, prefixes: frozenset[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in prefixes for i in range(1, len(parts) + 1))


def classify(module: str, name: str) -> Verdict:
    """Classify ``module.name`` as safe (allowlisted), dangerous (known primitive) or unknown."""
    full = f"{module}.{name}"
    if full in SAFE_GLOBALS:
        return Verdict.SAFE
    if full in _DANGEROUS_GLOBALS or _module_matches(module, _DANGEROUS_MODULES):
        return Verdict.DANGEROUS
    if _module_matches(full, _DANGEROUS_MODULES):
        return Verdict.DANGEROUS
    # Dunder attributes (``__globals__``, ``__subclasses__``, ...) reach interpreter internals.
    if any(part.startswith("__") and part.endswith("__") for part in name.split(".")):
        return Verdict.DANGEROUS
    if module == "__torch__" or module.startswith("__torch__."):
        return Verdict.CODE
    return Verdict.UNKNOWN


def is_loads_like(module: str, name: str) -> bool:
    return f"{module}.{name}" in LOADS_LIKE


# The copyreg extension registry that a stock CPython process starts with: empty. An EXT opcode
# therefore names whatever the loading process registered, which cannot be known statically.
STANDARD_EXTENSIONS: dict[int, tuple[str, str]] = {}
