"""Content no format scanner reads, and broken known formats, for the scanner tests.

Benign text and JSON files of a model folder, wrappers of archive formats the scanner does not
open, malformed safetensors. tests/test_scan_unrecognized.py proves each malicious sample with the
real loader (tests/helpers/live.py); tests/helpers/scan_corpus.py writes the same bytes into the corpus.
"""

from __future__ import annotations

import struct
import zlib

from tests.helpers.live import PAYLOAD_COMMAND


def text_evil_pickle() -> bytes:
    """Protocol 0: os.system(PAYLOAD_COMMAND)."""
    return b"cos\nsystem\n(S'" + PAYLOAD_COMMAND.encode() + b"'\ntR."


_LOREM = "Weights of a tiny model. Ünïcödé — 日本語 ✓\n"


TEXT_SAMPLES = {
    "README.md": "---\nlicense: mit\ntags: [tiny]\n---\n# tiny model\n\nUse it like this:\n\n```python\nx = 1\n```\n",
    "vocab.txt": "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" + "".join(f"tok{i}\n" for i in range(3000)) + "日本\n##s\n",
    "merges.txt": "#version: 0.2\n" + "".join(f"\u0120t{i} h{i}\n" for i in range(2000)),
    ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "LICENSE": "                                 Apache License\n\f\n   TERMS AND CONDITIONS\r\n\tsee below\n",
    "notes.yaml": "# training\nlr: 0.001\nsteps: 10\n",
    "big.md": "# big\n" + _LOREM * 30_000,  # > 1 MiB: multibyte characters straddle the read chunks
    "hubconf.py": "# torch hub entry points\ndependencies = ['torch']\n",
    "pytorch_model.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 12\n",
}


JSON_SAMPLES = {
    "config.json": {"architectures": ["BertModel"], "hidden_size": 8, "vocab_size": 30522, "layer_norm_eps": 1e-12},
    "tokenizer_config.json": {"do_lower_case": True, "model_max_length": 512, "unk_token": "[UNK]"},
    "special_tokens_map.json": {"cls_token": "[CLS]", "mask_token": "[MASK]"},
    "modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}],
    "model.safetensors.index.json": {"metadata": {"total_size": 8}, "weight_map": {"w": "model.safetensors"}},
    "vocab.json": {f"tok{i}": i for i in range(5000)} | {"日本": 5000},
}


def seven_zip(stream: bytes) -> bytes:
    """A 7z file holding ``stream`` as its packed data (signature header with correct CRCs)."""
    header = b"\x01\x04\x06\x00\x01\x09" + bytes([len(stream)]) + b"\x00\x00"
    tail = struct.pack("<QQI", len(stream), len(header), zlib.crc32(header))
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(tail)) + tail + stream + header


WRAPPERS = {
    "7z": (seven_zip, "7z archive"),
    "rar4": (lambda inner: b"Rar!\x1a\x07\x00\xcf\x90\x73\x00\x00\x0d\x00" + inner, "RAR archive"),
    "rar5": (lambda inner: b"Rar!\x1a\x07\x01\x00" + inner, "RAR archive"),
    "cab": (lambda inner: b"MSCF\x00\x00\x00\x00" + struct.pack("<I", 36 + len(inner)) + bytes(24) + inner, "cabinet"),
    "ar": (
        lambda inner: b"!<arch>\n" + b"data.pkl/       0     0     0     644     %-10d`\n" % len(inner) + inner,
        "ar",
    ),
    "cpio-binary": (lambda inner: b"\xc7\x71" + bytes(24) + b"data.pkl\x00\x00" + inner, "cpio"),
}


SAFETENSORS_HEADER = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'


def raw_safetensors(length: int, header: bytes, data: bytes = bytes(8)) -> bytes:
    return struct.pack("<Q", length) + header + data


def _tensors(*entries: tuple[str, str, list[int], list[int]]) -> bytes:
    """A safetensors file from raw (quoted name, dtype, shape, offsets) entries, 8 data bytes."""
    parts = [
        f'{name}:{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}'
        for name, dtype, shape, offsets in entries
    ]
    header = ("{" + ",".join(parts) + "}").replace(" ", "").encode()
    return raw_safetensors(len(header), header)


MALFORMED_SAFETENSORS = {
    "absurd-length": raw_safetensors(1 << 62, SAFETENSORS_HEADER),
    "length-past-end": raw_safetensors(len(SAFETENSORS_HEADER) + 100, SAFETENSORS_HEADER),
    "big-endian-length": struct.pack(">Q", len(SAFETENSORS_HEADER)) + SAFETENSORS_HEADER + bytes(8),
    "header-not-json": raw_safetensors(12, b"{not-json!!}"),
    "header-not-json-quoted": raw_safetensors(len(SAFETENSORS_HEADER), SAFETENSORS_HEADER[:-1] + b"!"),
    "header-not-utf8": raw_safetensors(len(SAFETENSORS_HEADER), SAFETENSORS_HEADER.replace(b'"w"', b'"\xff"')),
    "header-lone-surrogate": raw_safetensors(
        len(SAFETENSORS_HEADER) + 10, SAFETENSORS_HEADER.replace(b'"w"', b'"\\ud800w"') + b"    "
    ),
    "overlapping-offsets": _tensors(('"a"', "F32", [2], [0, 8]), ('"b"', "F32", [1], [4, 8])),
    "offsets-out-of-range": _tensors(('"w"', "F32", [2], [4, 12])),
    "trailing-bytes": raw_safetensors(len(SAFETENSORS_HEADER), SAFETENSORS_HEADER, bytes(12)),
    "duplicate-keys": _tensors(('"w"', "F32", [2], [0, 8]), ('"w"', "F32", [2], [0, 8])),
}
