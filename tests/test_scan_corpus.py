"""Every malicious sample is unsafe with a located finding; every benign one is safe with no blocking finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.scan import Finding, ScanReport, scan_path
from modelgate.scan.findings import BLOCKING
from tests.helpers.scan_corpus import Sample, build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], dict[str, ScanReport]]:
    samples = build_corpus(tmp_path_factory.mktemp("scan-corpus"))
    return samples, {s.technique: scan_path(s.path) for s in samples}


def _matches(finding: Finding, sample: Sample) -> bool:
    return (
        (sample.rule is None or finding.rule_id == sample.rule)
        and (sample.global_name is None or finding.global_name == sample.global_name)
        and (sample.member is None or sample.member in (finding.member or ""))
    )


def test_corpus_covers_every_technique(corpus: tuple[list[Sample], dict[str, ScanReport]]) -> None:
    samples, _ = corpus
    techniques = {s.technique for s in samples}
    assert len(techniques) == len(samples), "technique names must be unique"
    for required in (
        "os_system",
        "posix_system",
        "subprocess_popen",
        "builtins_eval_protocol0",
        "builtins_getattr_chain",
        "builtins_import_chain",
        "importlib_import_module",
        "runpy_run_path",
        "operator_attrgetter",
        "operator_methodcaller",
        "functools_partial",
        "nested_pickle_loads",
        "memo_indirection_stack_global",
        "ext_code_handwritten",
        "protocol0_global_text",
        "legacy_torch_payload_pickle3",
        "zip_storage_member_is_pickle",
        "zip_member_renamed_readme",
        "torchscript_constants_pickle",
        "numpy_object_array",
        "joblib_payload",
        "keras_nested_lambda",
        "h5_lambda",
        "onnx_external_data_traversal",
        "onnx_external_data_absolute",
        "safetensors_header_overflow",
        "safetensors_overlapping_offsets",
        "safetensors_trailing_bytes",
        "safetensors_bad_dtype",
        "zip_bad_crc",
        "zip_duplicate_names",
        "zip_encrypted_flag",
        "truncated_pickle",
        "torch_zip_state_dict",
        "torch_legacy_state_dict",
        "torch_zip_checkpoint_optimizer",
        "numpy_npy",
        "numpy_npz",
        "safetensors_torch",
        "gguf_handwritten_v3",
        "onnx_torch_export",
        "keras_standard_layers",
        "real_minilm_safetensors",
        "real_efficientnet_lite0_pth",
    ):
        assert required in techniques


def test_malicious_samples_are_unsafe_with_a_located_finding(
    corpus: tuple[list[Sample], dict[str, ScanReport]],
) -> None:
    samples, reports = corpus
    missed = []
    for sample in (s for s in samples if s.expected == "unsafe"):
        report = reports[sample.technique]
        hits = [f for f in report.findings if _matches(f, sample)]
        if report.verdict != "unsafe" or not hits:
            missed.append((sample.technique, [f.model_dump() for f in report.findings]))
            continue
        hit = hits[0]
        assert hit.file, sample.technique
        if hit.rule_id.startswith("pickle."):
            assert hit.offset is not None, f"{sample.technique}: a pickle finding carries its byte offset"
    assert not missed, missed


def test_benign_samples_have_zero_blocking_findings(corpus: tuple[list[Sample], dict[str, ScanReport]]) -> None:
    samples, reports = corpus
    false_positives = {
        s.technique: [f.model_dump() for f in reports[s.technique].findings if f.category in BLOCKING]
        for s in samples
        if s.expected == "safe"
    }
    assert {k: v for k, v in false_positives.items() if v} == {}
    assert all(reports[s.technique].verdict == "safe" for s in samples if s.expected == "safe")


def test_benign_formats_are_detected_by_content(corpus: tuple[list[Sample], dict[str, ScanReport]]) -> None:
    _, reports = corpus
    formats = {t: r.files[0].format for t, r in reports.items()}
    assert formats["torch_zip_state_dict"] == "pytorch-zip"
    assert formats["torch_legacy_state_dict"] == "pytorch-legacy"
    assert formats["real_efficientnet_lite0_pth"] == "pytorch-legacy"
    assert formats["real_minilm_safetensors"] == "safetensors"
    assert formats["numpy_npz"] == "npz"
    assert formats["joblib_numpy_arrays"] == "joblib"
    assert formats["keras_standard_layers"] == "keras"
    assert formats["keras_h5_standard_layers"] == "keras-h5"
    assert formats["gguf_handwritten_v3"] == "gguf"
    assert formats["onnx_torch_export"] == "onnx"
    assert formats["torchscript_code"] == "torchscript"


def test_checkpoint_globals_are_recorded(corpus: tuple[list[Sample], dict[str, ScanReport]]) -> None:
    _, reports = corpus
    globals_ = set(reports["torch_zip_checkpoint_optimizer"].files[0].globals)
    assert {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict"} <= globals_


def test_renamed_extension_does_not_change_the_verdict(tmp_path: Path) -> None:
    from tests.helpers.scan_corpus import PAYLOAD, reduce_call

    for name in ("weights.safetensors", "config.json", "model.onnx", "README.md"):
        (tmp_path / name).write_bytes(reduce_call("os", "system", PAYLOAD))
    report = scan_path(tmp_path)
    assert [f.format for f in report.files] == ["pickle"] * 4
    assert all(f.verdict == "unsafe" for f in report.files)
