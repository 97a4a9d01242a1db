"""Format scanners: archive structure, headers, links and limits are findings, never crashes."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from modelgate.scan import Limits, scan_bytes, scan_path
from tests.helpers.scan_corpus import PAYLOAD, gguf_file, reduce_call, safetensors_file, torch_bytes


def _rules(report: object) -> set[str]:
    return {f.rule_id for f in report.findings}  # type: ignore[attr-defined]


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_hidden_local_entry_between_members() -> None:
    hidden = _zip({"evil.pkl": reduce_call("os", "system", PAYLOAD)})
    local = hidden[: hidden.index(b"PK\x01\x02")]
    visible = _zip({"a.txt": b"hello"})
    cd = visible.index(b"PK\x01\x02")
    shift = len(local)
    eocd = visible.rindex(b"PK\x05\x06")
    patched = bytearray(visible[:cd] + local + visible[cd:])
    struct.pack_into("<L", patched, eocd + shift + 16, cd + shift)
    report = scan_bytes(bytes(patched), "model.zip")
    assert "zip.hidden-entry" in _rules(report)
    assert report.verdict == "unsafe"


def test_local_header_name_mismatch() -> None:
    data = bytearray(_zip({"data.pkl": b"\x80\x02N."}))
    data[30:38] = b"evil.pkl"
    assert "zip.header-mismatch" in _rules(scan_bytes(bytes(data), "m.zip"))


def test_prefixed_zip_scans_the_prefix() -> None:
    report = scan_bytes(reduce_call("os", "system", PAYLOAD) + _zip({"a.txt": b"x"}), "m.bin")
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" for f in report.findings)


def test_nested_archives_respect_the_depth_limit() -> None:
    data = _zip({"model.pkl": reduce_call("os", "system", PAYLOAD)})
    for level in range(6):
        data = _zip({f"level{level}.zip": data})
    shallow = scan_bytes(data, "m.zip", limits=Limits(max_depth=3))
    assert "archive.depth-limit" in _rules(shallow)
    deep = scan_bytes(data, "m.zip", limits=Limits(max_depth=10))
    assert any(f.global_name == "os.system" and f.member.count("!/") == 6 for f in deep.findings)


def test_member_count_limit() -> None:
    data = _zip({f"f{i}.txt": b"x" for i in range(20)})
    assert "archive.member-limit" in _rules(scan_bytes(data, "m.zip", limits=Limits(max_members=5)))


def test_storage_bytes_that_look_like_a_pickle_are_data() -> None:
    import torch

    state = torch_bytes({"w": torch.zeros(64)})
    with zipfile.ZipFile(io.BytesIO(state)) as archive:
        storage = next(n for n in archive.namelist() if n.endswith("/data/0"))
        members = {n: archive.read(n) for n in archive.namelist()}
    members[storage] = b"\x80\x02\x93\x82\x11" + bytes(range(251))  # 256 bytes, as the storage
    report = scan_bytes(_zip(members), "pytorch_model.bin")
    assert report.verdict == "safe", report.findings
    assert report.members[storage] == "data"


def test_named_dangerous_global_in_storage_bytes_is_still_found() -> None:
    import torch

    state = torch_bytes({"w": torch.zeros(64)})
    with zipfile.ZipFile(io.BytesIO(state)) as archive:
        storage = next(n for n in archive.namelist() if n.endswith("/data/0"))
        members = {n: archive.read(n) for n in archive.namelist()}
    members[storage] = reduce_call("os", "system", PAYLOAD)[:-1] + b"\xff" * 200  # no STOP, junk after
    report = scan_bytes(_zip(members), "pytorch_model.bin")
    assert any(f.global_name == "os.system" and f.member == storage for f in report.findings)


def test_deflated_zip_bomb_is_a_limit_not_inflated() -> None:
    data = _zip({"w.bin": b"\x00" * (8 << 20)}, zipfile.ZIP_DEFLATED)
    assert "archive.compression-ratio" in _rules(scan_bytes(data, "m.zip"))


def test_gzip_bomb_stops_at_the_cap() -> None:
    data = gzip.compress(b"\x00" * (8 << 20))
    assert "archive.compression-ratio" in _rules(scan_bytes(data, "m.gz"))


def test_gzip_second_member_is_scanned() -> None:
    data = gzip.compress(b"\x80\x02N.") + gzip.compress(reduce_call("os", "system", PAYLOAD))
    report = scan_bytes(data, "m.gz")
    assert any(f.global_name == "os.system" for f in report.findings)


def test_tar_links_traversal_and_members(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        payload = reduce_call("os", "system", PAYLOAD)
        info = tarfile.TarInfo("pickle")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo("weights")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        escape = tarfile.TarInfo("../escape.txt")
        archive.addfile(escape, io.BytesIO(b""))
    report = scan_bytes(buffer.getvalue(), "model.tar")
    assert report.format == "tar"
    assert {"tar.link", "tar.path-traversal", "pickle.dangerous-global"} <= _rules(report)


def test_safetensors_gap_and_metadata() -> None:
    gap = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
    }
    report = scan_bytes(safetensors_file(gap, b"\x00" * 24), "m.safetensors")
    assert any("unused bytes" in f.message for f in report.findings)
    shape = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    assert report.verdict == "unsafe"
    assert scan_bytes(safetensors_file(shape, b"\x00" * 8), "m.safetensors").verdict == "unsafe"


def test_safetensors_duplicate_keys_and_huge_header() -> None:
    raw = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    dup = struct.pack("<Q", len(raw)) + raw + b"\x00" * 4
    assert scan_bytes(dup, "m.safetensors").verdict == "unsafe"
    huge = struct.pack("<Q", 1 << 30) + b'{"a":1}'  # a length past the end of the file is malformed
    assert "safetensors.malformed" in _rules(scan_bytes(huge, "m.safetensors"))
    over_cap = struct.pack("<Q", 7) + b'{"a":1}'  # a header inside the file but over the cap is a limit
    capped = scan_bytes(over_cap, "m.safetensors", limits=Limits(max_header_bytes=4))
    assert "safetensors.header-limit" in _rules(capped)


def test_gguf_counts_larger_than_the_file() -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40)
    assert "gguf.malformed" in _rules(scan_bytes(data, "m.gguf"))
    assert scan_bytes(gguf_file(template="{{ x }}"), "m.gguf").verdict == "safe"


def test_gguf_truncated_everywhere_never_raises() -> None:
    data = gguf_file(template="{{ x }}")
    for cut in range(0, len(data), 7):
        report = scan_bytes(data[:cut], "m.gguf")
        assert cut < 8 or report.verdict in ("safe", "unsafe")


def test_npy_size_mismatch_and_bad_header() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(10, dtype=np.int32))
    good = buffer.getvalue()
    assert scan_bytes(good, "a.npy").verdict == "safe"
    assert "numpy.malformed" in _rules(scan_bytes(good[:-4], "a.npy"))
    evil_header = good.replace(b"'descr': '<i4'", b"'descr': __import__('os').system('id') or 1", 1)
    assert "numpy.malformed" in _rules(scan_bytes(evil_header, "a.npy"))


def test_hdf5_external_link(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:
        handle["weights"] = np.ones(3)
        handle["stolen"] = h5py.ExternalLink("/etc/passwd", "/")
    report = scan_path(path)
    assert "hdf5.external-file" in _rules(report)


def test_keras2_custom_class_in_h5_config() -> None:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        layers = [{"class_name": "Dense", "config": {}}, {"class_name": "MyAttention", "config": {}}]
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": layers}})
    report = scan_bytes(buffer.getvalue(), "m.h5")
    assert [f.rule_id for f in report.findings] == ["keras.custom-object"]
    assert "MyAttention" in report.findings[0].message


def test_onnx_missing_external_file(tmp_path: Path) -> None:
    from tests.helpers.scan_corpus import onnx_model

    (tmp_path / "model.onnx").write_bytes(onnx_model("missing.bin"))
    assert "onnx.external-data-missing" in _rules(scan_path(tmp_path / "model.onnx"))


def test_onnx_custom_domain_is_info() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Fancy", ["x"], ["y"], domain="com.example")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    report = scan_bytes(model.SerializeToString(), "m.onnx")
    assert report.format == "onnx" and report.verdict == "safe"
    assert [f.rule_id for f in report.findings] == ["onnx.custom-domain"]


def test_special_files_and_unreadable_paths(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "empty.bin").write_bytes(b"")
    report = scan_path(tmp_path)
    formats = {f.path: f.format for f in report.files}
    assert formats == {"empty.bin": "empty", "pipe": "special"}
    from modelgate.scan import ScanError

    with pytest.raises(ScanError, match="cannot scan"):
        scan_path(tmp_path / "nope")


def test_unknown_binary_is_an_unrecognized_blocking_finding() -> None:
    report = scan_bytes(bytes(range(1, 256)) * 10, "blob.bin")  # issue 13: no scanner reads it, so it fails closed
    assert report.format == "unrecognized"
    assert report.verdict == "unsafe"
    assert [f.rule_id for f in report.findings] == ["content.unrecognized"]
