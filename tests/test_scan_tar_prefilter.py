"""The tar pre-filter never says "not tar" where ``tarfile`` says "tar".

``is_tar_header`` asks a cheap checksum test first and imports ``tarfile`` only when it passes (start-up
time). The test is a necessary condition of ``TarInfo.frombuf``: checked here against tarfile itself
on real headers of every format, on blocks with a valid checksum planted in random bytes, and on
random mutations of both.
"""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from modelgate.scan.formats.tar_archive import _checksum_may_match, is_tar_header


def _accepts(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (tarfile.TarError, ValueError, UnicodeError, IndexError):
        return False
    return True


def _headers() -> list[bytes]:
    blocks = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
            info = tarfile.TarInfo("dir/weights.bin")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
        blocks.append(out.getvalue()[:512])
    v7 = bytearray(blocks[0])
    v7[257:265] = b"\0" * 8  # no ustar magic: what V7 writers produce
    v7[148:156] = b" " * 8
    v7[148:155] = f"{sum(v7):06o}\0".encode()
    blocks.append(bytes(v7))
    return blocks


def _planted(rng: random.Random, headers: list[bytes]) -> bytes:
    """A real header with random name and link name bytes (any byte values, so signed and unsigned sums
    differ) and its checksum recomputed: octal of either sum, or base-256."""
    block = bytearray(rng.choice(headers))
    block[0:100] = rng.randbytes(100)
    block[157:257] = rng.randbytes(100)
    block[148:156] = b" " * 8
    unsigned = sum(block)
    signed = sum(b - 256 if b > 127 else b for b in block)
    style = rng.randrange(3)
    if style == 0:
        block[148:156] = f"{unsigned:07o}\0".encode()
    elif style == 1 and signed >= 0:
        block[148:156] = f"{signed:06o}\0 ".encode()
    else:
        block[148:156] = b"\x80" + unsigned.to_bytes(7, "big")
    return bytes(block)


def test_real_headers_pass_both() -> None:
    for block in _headers():
        assert _accepts(block) and _checksum_may_match(block) and is_tar_header(block)


@pytest.mark.parametrize("seed", range(4))
def test_the_prefilter_is_never_stricter_than_tarfile(seed: int) -> None:
    rng = random.Random(seed)
    headers = _headers()
    samples = [*headers, *(_planted(rng, headers) for _ in range(200))]
    accepted = 0
    for base in samples:
        for _ in range(25):
            block = bytearray(base)
            for _ in range(rng.randrange(0, 3)):
                block[rng.randrange(512)] = rng.randrange(256)
            block = bytes(block)
            tar = _accepts(block)
            accepted += tar
            if tar:
                assert _checksum_may_match(block), block[148:156]
            assert is_tar_header(block) == tar
    assert accepted > 1000  # the accepted side was really exercised


def test_short_and_empty_blocks_are_not_tar() -> None:
    assert not is_tar_header(b"") and not is_tar_header(b"\x80\x04K.") and not is_tar_header(b"\0" * 512)
