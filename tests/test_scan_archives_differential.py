"""Archives and compression the scanner must read the way their loaders do (issue 13, class 3).

Every malicious sample is built from scratch (tests/helpers/archive_samples.py) and first proven
malicious with the real loader in a child process (``tests.helpers.live.runs_payload``); only then
is the scan asserted to block it. Every benign neighbour is loaded by the real loader
(``live.loads_cleanly``) and must scan ``safe``, unless its layout is ambiguous by nature (then the
reason is asserted).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
import safetensors.numpy

from modelgate.scan import scan_path
from modelgate.scan.findings import BLOCKING, ScanReport
from tests.helpers import live
from tests.helpers.archive_samples import (
    TAR_FORMATS,
    SystemPayload,
    as_v7,
    evil_npz,
    evil_pickle,
    lzma_alone,
    npz_bytes,
    prefixed_zip,
    safetensors_bytes,
    tar_bytes,
    torch_legacy_members,
    zfile,
    zip_bytes,
)

NPZ_LOADER = "import numpy, sys; z = numpy.load(sys.argv[1], allow_pickle=True); [z[k] for k in z.files]"
# What numpy.load does once it has decided a file is a zip: zipfile finds the archive from its end.
NPZ_ZIPFILE_LOADER = (
    "import numpy.lib.npyio as n, sys; z = n.NpzFile(open(sys.argv[1], 'rb'), allow_pickle=True);"
    " [z[k] for k in z.files]"
)
ZIP_PICKLE_LOADER = (
    "import pickle, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [pickle.loads(z.read(n)) for n in z.namelist()]"
)
TAR_PICKLE_LOADER = (
    "import pickle, sys, tarfile; t = tarfile.open(sys.argv[1], 'r:');"
    " [pickle.loads(t.extractfile(m).read()) for m in t.getmembers() if m.name.endswith('.pkl')]"
)
TAR_IGNORE_ZEROS_LOADER = (
    "import pickle, sys, tarfile; t = tarfile.open(sys.argv[1], 'r:', ignore_zeros=True);"
    " [pickle.loads(t.extractfile(m).read()) for m in t.getmembers() if m.name.endswith('.pkl')]"
)
TAR_SAFETENSORS_LOADER = (
    "import safetensors.numpy as s, sys, tarfile; t = tarfile.open(sys.argv[1], 'r:');"
    " [s.load(t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]"
)
NESTED_LOADER = (
    "import gzip, io, pickle, sys, tarfile, zipfile; z = zipfile.ZipFile(sys.argv[1]);"
    " t = tarfile.open(fileobj=io.BytesIO(gzip.decompress(z.read('model.tar.gz'))));"
    " [pickle.loads(t.extractfile(m).read()) for m in t.getmembers() if m.name.endswith('.pkl')]"
)
GZIP_LOADER = "import gzip, pickle, sys; pickle.load(gzip.open(sys.argv[1]))"
ZLIB_LOADER = "import pickle, sys, zlib; pickle.loads(zlib.decompress(open(sys.argv[1], 'rb').read()))"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _scan(path: Path) -> ScanReport:
    return scan_path(path)


def _rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings if f.category in BLOCKING}


def _assert_blocked(report: ScanReport, *rules: str) -> None:
    assert report.verdict == "unsafe", report.findings
    assert set(rules) <= _rules(report), (rules, report.findings)


def _payload_named(report: ScanReport) -> bool:
    return any(f.global_name in ("os.system", "posix.system") for f in report.findings)


def _assert_malicious_blocked(path: Path, loader: str, *rules: str) -> ScanReport:
    assert live.runs_payload(path, loader), f"{path.name} does not run its payload under {loader!r}"
    report = _scan(path)
    _assert_blocked(report, *rules)
    return report


def _assert_benign_safe(path: Path, loader: str) -> None:
    assert live.loads_cleanly(path, loader), f"{path.name} does not load under {loader!r}"
    report = _scan(path)
    assert report.verdict == "safe", [f for f in report.findings if f.category in BLOCKING]


# ---------------------------------------------------------------------------------------- zip


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


_PREFIXES: dict[str, bytes] = {
    "shell-stub": b'#!/bin/sh\nexec python -m unpack "$0"\n',
    "random": bytes((i * 151 + 7) % 256 for i in range(3000)),
    "safetensors": safetensors_bytes(),
    "hdf5-signature": b"\x89HDF\r\n\x1a\n" + bytes(504),
    "gzip-stream": gzip.compress(b"not the model", mtime=0),
    "npy": _npy(np.arange(3, dtype=np.float32)),
}


@pytest.mark.parametrize("prefix", sorted(_PREFIXES))
def test_npz_after_any_prefix_is_scanned_as_a_zip(tmp_path: Path, prefix: str) -> None:
    path = _write(tmp_path, "model.npz", _PREFIXES[prefix] + evil_npz())
    report = _assert_malicious_blocked(path, NPZ_ZIPFILE_LOADER, "zip.prefixed-data")
    assert _payload_named(report)
    assert any((f.member or "").startswith("meta.npy") for f in report.findings if f.global_name)


def test_npz_that_numpy_load_opens_despite_a_junk_prefix_is_blocked(tmp_path: Path) -> None:
    # numpy.load routes by the first bytes: an empty-archive signature sends it to zipfile.
    path = _write(tmp_path, "model.npz", b"PK\x05\x06" + b"junk" * 100 + evil_npz())
    report = _assert_malicious_blocked(path, NPZ_LOADER, "zip.prefixed-data")
    assert _payload_named(report)


@pytest.mark.parametrize("prefix", ["shell-stub", "random", "safetensors"])
def test_pickle_zip_after_a_prefix_is_blocked(tmp_path: Path, prefix: str) -> None:
    path = _write(tmp_path, "model.bin", _PREFIXES[prefix] + zip_bytes({"archive/data.pkl": evil_pickle(2)}))
    report = _assert_malicious_blocked(path, ZIP_PICKLE_LOADER, "zip.prefixed-data", "pickle.dangerous-global")
    assert report.files[0].format in ("zip", "pytorch-zip")


def test_pickle_that_is_also_a_zip_keeps_its_polyglot_finding(tmp_path: Path) -> None:
    data = pickle.dumps({"w": [1.0]}, protocol=2) + zip_bytes({"archive/data.pkl": evil_pickle(2)})
    path = _write(tmp_path, "model.pt", data)
    _assert_malicious_blocked(path, ZIP_PICKLE_LOADER, "pickle.polyglot", "zip.prefixed-data")


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_before_a_zip_whose_offsets_count_it_is_blocked(tmp_path: Path, protocol: int) -> None:
    path = _write(
        tmp_path, "model.pt", prefixed_zip(evil_pickle(protocol), zip_bytes({"archive/data.pkl": pickle.dumps([1.0])}))
    )
    assert live.loads_cleanly(path, ZIP_PICKLE_LOADER)  # zipfile sees a clean archive...
    report = _assert_malicious_blocked(path, "torch", "zip.prefixed-data", "pickle.polyglot")  # ...torch the pickle
    assert any(f.member == "<prefix>" for f in report.findings if f.global_name)


def test_pickle_before_an_empty_zip_end_record_is_blocked(tmp_path: Path) -> None:
    evil = evil_pickle()
    path = _write(tmp_path, "model.pkl", evil + b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 0, 0, 0, len(evil), 0))
    assert live.loads_cleanly(path, "import sys, zipfile; assert zipfile.ZipFile(sys.argv[1]).namelist() == []")
    report = _assert_malicious_blocked(path, "pickle", "zip.prefixed-data", "pickle.dangerous-global")
    assert _payload_named(report)


def test_zip_followed_by_bytes_that_zipfile_ignores_is_blocked(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "model.zip", zip_bytes({"data.pkl": evil_pickle()}) + b"trailing bytes after the end record"
    )
    _assert_malicious_blocked(path, ZIP_PICKLE_LOADER, "zip.bad-end-record", "pickle.dangerous-global")


def test_zip_comment_that_overflows_the_file_is_blocked(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"data.pkl": evil_pickle()}))
    struct.pack_into("<H", data, len(data) - 2, 500)  # zipfile still opens it (the last signature wins)
    path = _write(tmp_path, "model.zip", bytes(data))
    _assert_malicious_blocked(path, ZIP_PICKLE_LOADER, "zip.bad-end-record")


def test_npz_with_duplicate_names_is_blocked(tmp_path: Path) -> None:
    evil = io.BytesIO()
    np.save(evil, np.array([SystemPayload()], dtype=object), allow_pickle=True)
    benign = io.BytesIO()
    np.save(benign, np.arange(3))
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_bytes([("arr_0.npy", benign.getvalue()), ("arr_0.npy", evil.getvalue())])
    path = _write(tmp_path, "model.npz", data)
    report = _assert_malicious_blocked(path, NPZ_LOADER, "zip.duplicate-name")
    assert _payload_named(report)


@pytest.mark.parametrize("field", ["crc", "sizes", "method"])
def test_npz_whose_local_header_disagrees_with_the_directory_is_blocked(tmp_path: Path, field: str) -> None:
    data = bytearray(evil_npz())
    assert data[:4] == b"PK\x03\x04"
    if field == "crc":
        struct.pack_into("<L", data, 14, 0xDEADBEEF)  # zipfile reads the directory's CRC
    elif field == "sizes":
        struct.pack_into("<LL", data, 18, 1, 1)  # and the directory's sizes
    else:
        struct.pack_into("<H", data, 8, 8)  # and the directory's method (stored here)
    path = _write(tmp_path, "model.npz", bytes(data))
    report = _assert_malicious_blocked(path, NPZ_LOADER, "zip.header-mismatch")
    assert _payload_named(report)


def test_plain_npz_is_safe(tmp_path: Path) -> None:
    path = _write(tmp_path, "weights.npz", npz_bytes({"w": np.arange(12, dtype=np.float32), "b": np.zeros(3)}))
    _assert_benign_safe(path, NPZ_LOADER)


def test_safetensors_holding_zip_signatures_is_safe(tmp_path: Path) -> None:
    signatures = b"PK\x05\x06" + bytes(range(1, 19)) + b"PK\x01\x02PK\x03\x04" * 2
    tensors = {"a": np.frombuffer(signatures, dtype=np.uint8).copy(), "b": np.linspace(0, 1, 100, dtype=np.float32)}
    path = _write(tmp_path, "model.safetensors", safetensors.numpy.save(tensors))
    _assert_benign_safe(path, "import safetensors.numpy as s, sys; s.load_file(sys.argv[1])")


def test_zip_after_a_stub_of_zeros_is_blocked_as_ambiguous(tmp_path: Path) -> None:
    # A self-extractor-like stub: zipfile opens the archive, numpy and torch read the head and refuse
    # it. Bytes before an archive are what a polyglot hides in, so the gate blocks with the reason.
    path = _write(tmp_path, "weights.npz", bytes(4096) + npz_bytes({"w": np.arange(3)}))
    assert live.loads_cleanly(path, NPZ_ZIPFILE_LOADER)
    report = _scan(path)
    _assert_blocked(report, "zip.prefixed-data")
    prefixed = next(f for f in report.findings if f.rule_id == "zip.prefixed-data")
    assert "4096 bytes precede the archive" in prefixed.message
    assert all(f.member in (None, "<prefix>") for f in report.findings if f.category in BLOCKING)


def test_cli_exits_1_on_a_prefixed_malicious_zip(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.bin", _PREFIXES["shell-stub"] + zip_bytes({"data.pkl": evil_pickle()}))
    assert live.runs_payload(path, ZIP_PICKLE_LOADER)
    cli = Path(sys.executable).with_name("modelgate")
    done = subprocess.run([str(cli), "scan", str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------- tar


@pytest.mark.parametrize("fmt", sorted(TAR_FORMATS))
@pytest.mark.parametrize("where", ["pickle", "storages", "tensors"])
def test_torch_legacy_tar_payload_is_blocked(tmp_path: Path, fmt: str, where: str) -> None:
    path = _write(tmp_path, "model.pt", TAR_FORMATS[fmt](torch_legacy_members(where)))
    report = _assert_malicious_blocked(path, "torch", "pickle.dangerous-global")
    assert report.files[0].format == "tar"
    assert any(f.member == where for f in report.findings if f.global_name)


def test_gnu_long_name_member_is_scanned(tmp_path: Path) -> None:
    name = "deep/" * 30 + "model.pkl"
    path = _write(tmp_path, "model.tar", tar_bytes([(name, evil_pickle())], tarfile.GNU_FORMAT))
    report = _assert_malicious_blocked(path, TAR_PICKLE_LOADER, "pickle.dangerous-global")
    assert any(f.member == name for f in report.findings if f.global_name)


def test_tar_member_hidden_after_the_end_of_the_archive_is_blocked(tmp_path: Path) -> None:
    data = tar_bytes([("model.safetensors", safetensors_bytes())]) + tar_bytes([("extra.pkl", evil_pickle())])
    path = _write(tmp_path, "model.tar", data)
    _assert_malicious_blocked(path, TAR_IGNORE_ZEROS_LOADER, "tar.malformed")


def test_tar_whose_second_header_is_damaged_is_blocked(tmp_path: Path) -> None:
    data = bytearray(tar_bytes([("a.safetensors", safetensors_bytes()), ("b.pkl", evil_pickle())]))
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as archive:
        second = archive.getmembers()[1].offset
    data[second + 148] ^= 0x01  # tarfile now stops silently before b.pkl
    path = _write(tmp_path, "model.tar", bytes(data))
    assert live.loads_cleanly(path, TAR_SAFETENSORS_LOADER)
    _assert_blocked(_scan(path), "tar.malformed")


def test_tar_whose_header_is_a_pickle_is_blocked(tmp_path: Path) -> None:
    name = b"cos\nsystem\n(S'" + live.PAYLOAD_COMMAND.encode() + b"'\ntR."
    data = as_v7(tar_bytes([(name.decode(), safetensors_bytes())]))
    path = _write(tmp_path, "model.pkl", data)
    assert live.loads_cleanly(path, TAR_SAFETENSORS_LOADER)
    report = _assert_malicious_blocked(path, "pickle", "tar.malformed", "pickle.dangerous-global")
    assert any(f.member == "<pickle>" for f in report.findings if f.global_name)


def test_gzip_whose_header_is_also_a_tar_scans_both_views(tmp_path: Path) -> None:
    """gzip's FEXTRA field swallows a tar header: gzip readers see one pickle, tarfile a second member."""
    from tests.helpers.fail_closed_samples import gzip_header_tar

    benign = pickle.dumps({"w": 1}, protocol=2)
    data = gzip_header_tar(benign, tar_bytes([("payload.pkl", evil_pickle())]))
    path = _write(tmp_path, "model.joblib", data)
    assert zlib.decompressobj(31).decompress(data) == benign  # what a gzip reader sees
    report = _assert_malicious_blocked(path, TAR_PICKLE_LOADER, "tar.malformed", "pickle.dangerous-global")
    assert any((f.member or "").startswith("<tar>") for f in report.findings if f.global_name)


@pytest.mark.parametrize("fmt", sorted(TAR_FORMATS))
def test_tar_of_safetensors_is_safe(tmp_path: Path, fmt: str) -> None:
    members = [("model-00001.safetensors", safetensors_bytes()), ("model-00002.safetensors", safetensors_bytes())]
    path = _write(tmp_path, "model.tar", TAR_FORMATS[fmt](members))
    _assert_benign_safe(path, TAR_SAFETENSORS_LOADER)
    assert _scan(path).files[0].format == "tar"


def test_ustar_magic_with_a_bad_checksum_is_blocked(tmp_path: Path) -> None:
    data = bytearray(tar_bytes([("model.safetensors", safetensors_bytes())]))
    data[148:156] = b"0000001\x00"
    path = _write(tmp_path, "model.tar", bytes(data))
    _assert_blocked(_scan(path), "tar.malformed")


# -------------------------------------------------------------------------------- compression


@pytest.mark.parametrize("compress", ["lzma", "xz", "gzip", "bz2", "zlib"])
def test_joblib_compressed_payload_is_blocked(tmp_path: Path, compress: str) -> None:
    path = tmp_path / f"model.joblib.{compress}"
    joblib.dump({"model": SystemPayload(), "w": np.arange(5)}, path, compress=compress)
    report = _assert_malicious_blocked(path, "joblib", "pickle.dangerous-global")
    assert report.files[0].format.startswith({"bz2": "bzip2"}.get(compress, compress))


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("lzma-alone", lambda: lzma_alone(evil_pickle())),
        ("lzma-alone-protocol0", lambda: lzma_alone(evil_pickle(0))),
        ("zfile", lambda: zfile(evil_pickle())),
        ("zfile-protocol2", lambda: zfile(evil_pickle(2))),
    ],
)
def test_joblib_compressors_built_by_hand_are_blocked(tmp_path: Path, name: str, build: Callable[[], bytes]) -> None:
    path = _write(tmp_path, f"{name}.joblib", build())
    report = _assert_malicious_blocked(path, "joblib", "pickle.dangerous-global")
    assert report.files[0].format.split("+")[0] in ("lzma", "zfile")


def _split(data: bytes, compress: Callable[[bytes], bytes]) -> bytes:
    half = len(data) // 2
    return compress(data[:half]) + compress(data[half:])


@pytest.mark.parametrize(
    ("name", "data", "loader"),
    [
        ("gzip-empty-first", gzip.compress(b"") + gzip.compress(evil_pickle()), "gzip"),
        ("gzip-split", _split(evil_pickle(), gzip.compress), "gzip"),
        ("bz2-empty-first", bz2.compress(b"") + bz2.compress(evil_pickle()), "bz2"),
        ("bz2-split", _split(evil_pickle(), bz2.compress), "bz2"),
        ("xz-empty-first", lzma.compress(b"") + lzma.compress(evil_pickle()), "lzma"),
        ("xz-split", _split(evil_pickle(), lzma.compress), "lzma"),
        ("alone-split", _split(evil_pickle(), lzma_alone), "lzma"),
    ],
)
def test_concatenated_streams_are_all_scanned(tmp_path: Path, name: str, data: bytes, loader: str) -> None:
    path = _write(tmp_path, name, data)
    code = f"import {loader}, pickle, sys; pickle.load({loader}.open(sys.argv[1]))"
    report = _assert_malicious_blocked(path, code, "pickle.dangerous-global")
    assert _payload_named(report)


@pytest.mark.parametrize(
    ("name", "data", "loader"),
    [
        (
            "bz2",
            bz2.compress(evil_pickle()) + b"trailing garbage",
            "import bz2, pickle, sys; pickle.load(bz2.open(sys.argv[1]))",
        ),
        (
            "xz",
            lzma.compress(evil_pickle()) + b"trailing garbage",
            "import lzma, pickle, sys; pickle.load(lzma.open(sys.argv[1]))",
        ),
        ("lzma-alone", lzma_alone(evil_pickle()) + b"trailing garbage", "joblib"),
        ("gzip", gzip.compress(evil_pickle()) + b"trailing garbage", GZIP_LOADER),
        ("zlib", zlib.compress(evil_pickle()) + b"trailing garbage", ZLIB_LOADER),
        ("bz2-then-xz", bz2.compress(evil_pickle()) + lzma.compress(b"x"), "joblib"),
    ],
)
def test_stream_followed_by_garbage_is_blocked(tmp_path: Path, name: str, data: bytes, loader: str) -> None:
    path = _write(tmp_path, name, data)
    _assert_malicious_blocked(path, loader, "compressed.malformed", "pickle.dangerous-global")


@pytest.mark.parametrize(
    ("kind", "magic"),
    [("lz4", b"\x04\x22\x4d\x18"), ("zstd", b"\x28\xb5\x2f\xfd")],
)
def test_compressors_the_scanner_cannot_open_are_blocked(tmp_path: Path, kind: str, magic: bytes) -> None:
    path = _write(tmp_path, f"model.{kind}", magic + b"\x64\x40\xa7" + evil_pickle())
    report = _scan(path)
    _assert_blocked(report, "compressed.unsupported")
    assert any(kind in f.message for f in report.findings if f.rule_id == "compressed.unsupported")


def test_lz4_joblib_payload_is_blocked_when_lz4_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("lz4.frame")  # joblib.load reads lz4 only where the lz4 package is installed
    path = tmp_path / "model.joblib.lz4"
    joblib.dump(SystemPayload(), path, compress="lz4")
    _assert_malicious_blocked(path, "joblib", "compressed.unsupported")


def test_truncated_stream_is_blocked(tmp_path: Path) -> None:
    full = lzma_alone(evil_pickle() + bytes(2000))
    path = _write(tmp_path, "model.joblib", full[: len(full) - 8])
    _assert_blocked(_scan(path), "compressed.malformed")


def test_zfile_whose_declared_length_lies_is_blocked(tmp_path: Path) -> None:
    data = evil_pickle()
    path = _write(tmp_path, "model.joblib", b"ZF" + hex(len(data) + 1).encode().ljust(19) + zlib.compress(data))
    _assert_blocked(_scan(path), "compressed.malformed")


@pytest.mark.parametrize("compress", ["lzma", "xz", "gzip", "bz2", "zlib"])
def test_joblib_compressed_array_is_safe(tmp_path: Path, compress: str) -> None:
    path = tmp_path / f"weights.joblib.{compress}"
    joblib.dump(np.arange(1000, dtype=np.float32).reshape(10, 100), path, compress=compress)
    _assert_benign_safe(path, "joblib")


def test_text_that_starts_like_a_joblib_prefix_is_not_called_compressed(tmp_path: Path) -> None:
    path = _write(tmp_path, "NOTES.md", b"ZFS snapshots of the training disk are kept for a week.\n")
    assert not any(f.rule_id.startswith("compressed.") for f in _scan(path).findings)


# ------------------------------------------------------------------------------------- nested


def test_tar_in_gzip_in_zip_is_scanned_to_the_payload(tmp_path: Path) -> None:
    inner = gzip.compress(
        tar_bytes([("weights.safetensors", safetensors_bytes()), ("model.pkl", evil_pickle())]), mtime=0
    )
    path = _write(tmp_path, "bundle.zip", zip_bytes({"model.tar.gz": inner}))
    report = _assert_malicious_blocked(path, NESTED_LOADER, "pickle.dangerous-global")
    assert any(f.member == "model.tar.gz!/<gzip>!/model.pkl" for f in report.findings if f.global_name)


def test_zip_in_tar_in_xz_is_scanned_to_the_payload(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "bundle.tar.xz", lzma.compress(tar_bytes([("inner.zip", zip_bytes({"data.pkl": evil_pickle()}))]))
    )
    loader = (
        "import io, lzma, pickle, sys, tarfile, zipfile; t = tarfile.open(sys.argv[1], 'r:xz');"
        " z = zipfile.ZipFile(io.BytesIO(t.extractfile('inner.zip').read())); pickle.loads(z.read('data.pkl'))"
    )
    # zipfile finds the inner zip from the end of the tar too: both views are scanned, and blocked.
    report = _assert_malicious_blocked(path, loader, "pickle.dangerous-global", "tar.malformed")
    assert any(f.member == "<xz>!/<tar>!/inner.zip!/data.pkl" for f in report.findings if f.global_name)


def test_tar_whose_last_member_is_a_zip_is_blocked_as_ambiguous(tmp_path: Path) -> None:
    """zipfile (and Keras, which asks zipfile.is_zipfile) opens the last member as the whole file."""
    members = [("model.safetensors", safetensors_bytes()), ("extra.npz", npz_bytes({"w": np.arange(3)}))]
    path = _write(tmp_path, "bundle.tar", tar_bytes(members))
    assert live.loads_cleanly(path, TAR_SAFETENSORS_LOADER.replace("m.isfile()", "m.name.endswith('.safetensors')"))
    assert live.loads_cleanly(path, NPZ_ZIPFILE_LOADER)
    report = _scan(path)
    _assert_blocked(report, "tar.malformed", "zip.prefixed-data")
    assert any("both zip data and a tar archive" in f.message for f in report.findings)


def test_safetensors_in_tar_in_gzip_in_zip_is_safe(tmp_path: Path) -> None:
    inner = gzip.compress(tar_bytes([("weights.safetensors", safetensors_bytes())]), mtime=0)
    path = _write(tmp_path, "bundle.zip", zip_bytes({"model.tar.gz": inner}))
    loader = (
        "import gzip, io, safetensors.numpy as s, sys, tarfile, zipfile; z = zipfile.ZipFile(sys.argv[1]);"
        " t = tarfile.open(fileobj=io.BytesIO(gzip.decompress(z.read('model.tar.gz'))));"
        " s.load(t.extractfile('weights.safetensors').read())"
    )
    _assert_benign_safe(path, loader)
