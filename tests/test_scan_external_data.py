"""ONNX external data: the raw tensor file beside model.onnx is numbers to its loader, not unrecognized content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelgate.scan import scan_path
from tests.helpers.live import loads_cleanly
from tests.helpers.pickle_attacks import payload_pickle


def _onnx_with_external_data(folder: Path, data_name: str = "weights.bin") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).random((64, 32), dtype=np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location=data_name, size_threshold=0)
    return path


LOAD_ONNX = "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m)"


def test_external_data_of_an_onnx_model_is_judged_as_its_tensor_bytes(tmp_path: Path) -> None:
    model = _onnx_with_external_data(tmp_path)
    assert (tmp_path / "weights.bin").stat().st_size == 64 * 32 * 4
    assert loads_cleanly(model, LOAD_ONNX)
    report = scan_path(tmp_path)
    assert report.verdict == "safe", report.findings
    assert {f.path: f.format for f in report.files}["weights.bin"] == "onnx-external-data"


def test_the_same_raw_file_without_a_model_referencing_it_is_unrecognized(tmp_path: Path) -> None:
    _onnx_with_external_data(tmp_path)
    (tmp_path / "model.onnx").unlink()
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert [f.rule_id for f in report.findings] == ["content.unrecognized"]


def test_an_external_data_file_that_is_a_pickle_keeps_its_findings(tmp_path: Path) -> None:
    _onnx_with_external_data(tmp_path)
    evil = payload_pickle()
    (tmp_path / "weights.bin").write_bytes(evil + bytes(64 * 32 * 4 - len(evil)))
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" for f in report.findings)


def test_names_that_are_not_utf8_still_give_a_writable_report(tmp_path: Path) -> None:
    # tar member names decode with surrogateescape, pickle strings may hold lone surrogates: the
    # evidence (JSON) must still be written, or the intake errors instead of rejecting.
    import io
    import json
    import tarfile

    evil = payload_pickle()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        info = tarfile.TarInfo("mod\xe8le.pkl")
        info.size = len(evil)
        archive.addfile(info, io.BytesIO(evil))
    (tmp_path / "m.tar").write_bytes(out.getvalue())
    surrogate = b"\x80\x04" + b"\x8c\x03a\xed\xa0\x80".replace(b"\x03", b"\x04") + b"\x8c\x01x\x93)R."
    (tmp_path / "s.pkl").write_bytes(surrogate)
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    text = json.dumps(report.model_dump(mode="json"), ensure_ascii=False)
    text.encode("utf-8")  # raises on a lone surrogate
    assert any(f.global_name == "os.system" for f in report.findings)


def test_a_saved_model_folder_s_variables_are_its_tensor_bytes(tmp_path: Path) -> None:
    """A real tensor bundle is read completely (tf_bundle): its index as TensorFlow's BundleReader reads
    it, its shard tiled by the entries; a garbage index is not vouched for, even beside a graph."""
    from modelgate.scan.formats import tf_bundle
    from tests.helpers.saved_models import TENSORS, saved_model, serving, write_bundle

    nodes, functions = serving()
    (tmp_path / "saved_model.pb").write_bytes(saved_model(nodes, functions))
    write_bundle(tmp_path / "variables", "variables", TENSORS)  # TensorFlow reads this back (live test)
    (tmp_path / "fingerprint.pb").write_bytes(b"\x08\xd2\x09\x10\x01\x18\x02")
    report = scan_path(tmp_path)
    formats = {f.path: f.format for f in report.files}
    assert report.verdict == "safe", report.findings
    assert formats["variables/variables.index"] == "tf-bundle"
    assert formats["variables/variables.data-00000-of-00001"] == "tf-bundle-data"
    assert formats["fingerprint.pb"] == "saved-model-fingerprint"
    (tmp_path / "saved_model.pb").unlink()
    assert {f.file for f in scan_path(tmp_path).findings} == {"fingerprint.pb"}
    (tmp_path / "variables" / "variables.index").write_bytes(bytes(range(7, 200)) * 3 + tf_bundle.MAGIC)
    assert {f.rule_id for f in scan_path(tmp_path).findings} == {"content.unrecognized"}
