"""Evaluation data: every supported format loads the same images, and every bad set fails with one clear line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tasks.evaluate.data import EvalDataError, load_eval_data, per_class
from tasks.evaluate.png import PngError, decode_png, encode_png

SHAPE = (1, 16, 16)


def _images(count: int = 30, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(count, 16, 16), dtype=np.uint8)
    y = np.arange(count) % classes
    return x, y


def _one_line(exc: pytest.ExceptionInfo[EvalDataError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- the PNG codec -----------------------------------------------------------------------------


def _filtered_png(pixels: np.ndarray, filters: list[int]) -> bytes:
    """A PNG whose rows use the given filter types (a reference encoder for the decoder's filters)."""
    height, width, channels = pixels.shape
    bpp, rows = channels, pixels.reshape(height, width * channels).astype(np.int64)
    out = bytearray()
    for r, kind in enumerate(filters):
        line, prior = rows[r], rows[r - 1] if r else np.zeros_like(rows[0])
        left = np.concatenate([np.zeros(bpp, np.int64), line[:-bpp]])
        corner = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        if kind == 0:
            encoded = line
        elif kind == 1:
            encoded = line - left
        elif kind == 2:
            encoded = line - prior
        elif kind == 3:
            encoded = line - (left + prior) // 2
        else:
            p = left + prior - corner
            pa, pb, pc = abs(p - left), abs(p - prior), abs(p - corner)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, corner))
            encoded = line - pred
        out += bytes([kind]) + (encoded % 256).astype(np.uint8).tobytes()
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_decoder_undoes_every_row_filter(channels: int) -> None:
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, size=(10, 7, channels), dtype=np.uint8)
    filters = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    assert np.array_equal(decode_png(_filtered_png(pixels, filters)), pixels)


def test_png_encoder_round_trips_and_decoder_refuses_garbage() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(pixels)), pixels)
    assert decode_png(encode_png(np.ones((4, 4)))).max() == 255  # floats in [0, 1] are scaled
    with pytest.raises(PngError, match="not a PNG"):
        decode_png(b"GIF89a....")
    truncated = encode_png(pixels)[:-30]
    with pytest.raises(PngError):
        decode_png(truncated)


# --- formats -----------------------------------------------------------------------------------


def test_builtin_digits_is_the_demo_held_out_split() -> None:
    data = load_eval_data("sklearn:digits", input_shape=SHAPE, num_classes=10)
    assert tuple(data.x.shape) == (450, 1, 16, 16)
    assert sorted(data.summary["per_class"]) == [str(d) for d in range(10)]
    assert data.summary["min_per_class"] >= 43  # stratified 25% of every digit
    assert float(data.x.min()) >= 0.0 and float(data.x.max()) <= 1.0
    assert data.summary["digest"].startswith("sha256:")
    rgb = load_eval_data("sklearn:digits", input_shape=(3, 32, 32), num_classes=10)
    assert tuple(rgb.x.shape) == (450, 3, 32, 32)


def test_folder_npz_and_parquet_load_the_same_images(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = _images()
    folder = tmp_path / "folder"
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        (folder / str(label) / f"{i:03d}.png").write_bytes(encode_png(image))
    np.savez(tmp_path / "set.npz", x=x, y=y)
    pq.write_table(pa.table({"image": [encode_png(im) for im in x], "label": y.tolist()}), tmp_path / "png.parquet")
    pq.write_table(
        pa.table({"pixels": [(im / 255.0).ravel().tolist() for im in x], "label": y.tolist()}),
        tmp_path / "pixels.parquet",
    )
    loaded = {
        ref: load_eval_data(str(ref), input_shape=SHAPE, num_classes=3)
        for ref in (folder, tmp_path / "set.npz", tmp_path / "png.parquet", tmp_path / "pixels.parquet")
    }
    reference = loaded[tmp_path / "set.npz"]
    order = np.argsort(reference.y.numpy(), kind="stable")  # the folder is read class by class
    for ref, data in loaded.items():
        assert data.summary["samples"] == 30 and data.summary["per_class"] == {"0": 10, "1": 10, "2": 10}, ref
        if ref == folder:
            assert np.allclose(data.x.numpy(), reference.x.numpy()[order], atol=1e-6)
        else:
            assert np.allclose(data.x.numpy(), reference.x.numpy(), atol=1e-6), ref
    assert {d.format for d in loaded.values()} == {"folder", "npz", "parquet"}


def test_folder_names_map_to_the_model_label_names(tmp_path: Path) -> None:
    x, _ = _images(4)
    for name, image in zip(["cat", "dog", "cat", "dog"], x, strict=True):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{image.sum()}.png").write_bytes(encode_png(image))
    data = load_eval_data(str(tmp_path), input_shape=SHAPE, label_names=["dog", "cat"])
    assert sorted(data.y.tolist()) == [0, 0, 1, 1]
    assert data.label_names == ("dog", "cat")
    with pytest.raises(EvalDataError) as exc:
        load_eval_data(str(tmp_path), input_shape=SHAPE, label_names=["dog", "bird"])
    assert "folder 'cat' is not a label of the model" in _one_line(exc)


def test_npz_channels_last_and_rgb_to_gray(tmp_path: Path) -> None:
    x, y = _images()
    np.savez(tmp_path / "nhwc.npz", x=x[..., None], y=y)
    assert tuple(load_eval_data(str(tmp_path / "nhwc.npz"), input_shape=SHAPE).x.shape) == (30, 1, 16, 16)
    folder = tmp_path / "rgb" / "0"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(encode_png(np.stack([x[0]] * 3, axis=2)))
    data = load_eval_data(str(tmp_path / "rgb"), input_shape=SHAPE, num_classes=1)
    assert np.allclose(data.x[0, 0].numpy(), x[0] / 255.0, atol=1 / 255)


def test_per_class_subset_is_balanced_and_seeded() -> None:
    data = load_eval_data("sklearn:digits", input_shape=SHAPE, num_classes=10)
    a, b, c = per_class(data, 7, seed=1), per_class(data, 7, seed=1), per_class(data, 7, seed=2)
    assert np.bincount(a.y.numpy()).tolist() == [7] * 10
    assert np.array_equal(a.x.numpy(), b.x.numpy()) and not np.array_equal(a.x.numpy(), c.x.numpy())


# --- validation errors -------------------------------------------------------------------------


def test_missing_class_is_named(tmp_path: Path) -> None:
    x, y = _images()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(EvalDataError) as exc:
        load_eval_data(str(tmp_path / "d.npz"), input_shape=SHAPE, num_classes=5)
    assert _one_line(exc).endswith("no samples of class 3, 4 (every class is needed)")


def test_wrong_shape_in_a_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", x=np.zeros((20, 8, 8), np.uint8), y=np.arange(20) % 2)
    with pytest.raises(EvalDataError) as exc:
        load_eval_data(str(tmp_path / "small.npz"), input_shape=SHAPE, num_classes=2)
    assert "images are 1x8x8, the model expects 1x16x16" in _one_line(exc)


def test_too_few_samples_per_class(tmp_path: Path) -> None:
    x, y = _images(12, classes=3)
    y[:9] = 0  # class 1 and 2 keep one or two images
    np.savez(tmp_path / "few.npz", x=x, y=y)
    with pytest.raises(EvalDataError) as exc:
        load_eval_data(str(tmp_path / "few.npz"), input_shape=SHAPE, num_classes=3, min_per_class=2)
    assert "has 1 samples, at least 2 per class are needed" in _one_line(exc)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.full((4, 16, 16), 2.0), "y": np.arange(4) % 2}, "pixel values must be finite and in [0, 1]"),
        ({"x": np.zeros((4, 16, 16), np.uint8), "y": np.array([0, 1, 2, 7])}, "labels must be in 0..1, found 0..7"),
        ({"x": np.zeros((4, 16, 16), np.uint8), "y": np.arange(3)}, "4 images but 3 labels"),
        ({"x": np.zeros((4, 16, 16), np.uint8)}, "needs arrays 'x' and 'y'"),
        ({"x": np.zeros((4, 16, 16), np.uint8), "y": np.array([0.5, 1, 0, 1])}, "labels must be a 1-D array of int"),
    ],
)
def test_bad_arrays_fail_with_one_line(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EvalDataError) as exc:
        load_eval_data(str(tmp_path / "bad.npz"), input_shape=SHAPE, num_classes=2)
    assert message in _one_line(exc)


def test_bad_references_fail_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n")
    (tmp_path / "folder" / "0").mkdir(parents=True)
    (tmp_path / "folder" / "0" / "a.jpg").write_bytes(b"\xff\xd8")
    cases = {
        str(tmp_path / "nope"): "not found",
        str(tmp_path / "data.csv"): "unsupported file type '.csv'",
        str(tmp_path / "folder"): "0/a.jpg is not a PNG",
    }
    for ref, message in cases.items():
        with pytest.raises(EvalDataError) as exc:
            load_eval_data(ref, input_shape=SHAPE)
        assert message in _one_line(exc), ref
