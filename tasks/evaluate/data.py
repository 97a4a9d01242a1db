"""Evaluation data: the organization's labelled images, loaded and validated before any evaluation runs.

References: a folder of ``<class>/<image>.png``, an ``.npz`` with ``x`` and ``y``, a parquet file
(``label`` plus ``image`` PNG bytes or ``pixels``), or the built-in ``sklearn:digits`` (the demo's
held-out split, upsampled like the demo). Images end up as float tensors ``(N, C, H, W)`` in [0, 1]
(the models normalize inside). A bad set fails with one line naming the reference and the problem,
so an evaluation never runs on data that would make its numbers meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelgate.evidence import sha256_bytes
from tasks.evaluate.png import PngError, decode_png

if TYPE_CHECKING:
    import torch

BUILTINS = ("sklearn:digits",)
MAX_SAMPLES = 200_000
LUMA = np.array([0.299, 0.587, 0.114])


class EvalDataError(ValueError):
    """Evaluation data that cannot be used, with a one-line reason."""


@dataclass(frozen=True)
class EvalData:
    """Validated images ``x`` (N, C, H, W) in [0, 1] and integer labels ``y`` (N)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    source: str
    format: str
    label_names: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)


def load_eval_data(
    ref: str,
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    label_names: Sequence[str] | None = None,
    min_per_class: int = 1,
) -> EvalData:
    """Load ``ref`` and validate it against what the model expects (shape, classes, counts)."""
    import torch

    ref = ref.strip()
    shape = tuple(input_shape) if input_shape is not None else None
    names = tuple(label_names or ())
    x_np, y_np, fmt, names = _read(ref, shape, names)
    classes = num_classes if num_classes is not None else (len(names) or int(y_np.max(initial=-1)) + 1)
    _validate(ref, x_np, y_np, shape, classes, min_per_class)
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(y_np, dtype=np.int64))
    names = names if len(names) == classes else tuple(str(c) for c in range(classes))
    return EvalData(x, y, classes, ref, fmt, names, _summary(ref, fmt, x_np, y_np, names))


def per_class(data: EvalData, count: int, seed: int = 0) -> EvalData:
    """At most ``count`` samples of every class, chosen by a seeded shuffle (stable for a seed)."""
    import torch

    order = torch.randperm(len(data.y), generator=torch.Generator().manual_seed(seed))
    picked = [order[data.y[order] == c][:count] for c in range(data.num_classes)]
    index = torch.cat(picked).sort().values
    return EvalData(
        data.x[index],
        data.y[index],
        data.num_classes,
        data.source,
        data.format,
        data.label_names,
        {**data.summary, "subset_per_class": count, "subset_seed": seed, "subset_samples": len(index)},
    )


def _read(
    ref: str, shape: tuple[int, ...] | None, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, str, tuple[str, ...]]:
    if ref in BUILTINS:
        x, y = _digits(shape)
        return x, y, "builtin", names or tuple(str(d) for d in range(10))
    path = Path(ref.removeprefix("file://")).expanduser()
    if not path.exists():
        raise EvalDataError(f"eval data {ref}: not found (use a folder, .npz, .parquet or {', '.join(BUILTINS)})")
    if path.is_dir():
        x, y, names = _folder(ref, path, shape, names)
        return x, y, "folder", names
    if path.suffix == ".npz":
        x, y = _npz(ref, path)
        return _channels(ref, x, shape), y, "npz", names
    if path.suffix == ".parquet":
        x, y = _parquet(ref, path, shape)
        return x, y, "parquet", names
    raise EvalDataError(f"eval data {ref}: unsupported file type {path.suffix!r} (use a folder, .npz or .parquet)")


def _digits(shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """The demo's held-out digits (seed 0), at the model's side and channel count."""
    from modelgate.demo.build import IMAGE_SIDE, digits_dataset

    channels, side = (shape[0], shape[1]) if shape else (1, IMAGE_SIDE)
    split = digits_dataset(seed=0, side=side)
    x = split.test_x.numpy()
    return (np.repeat(x, channels, axis=1) if channels > 1 else x), split.test_y.numpy()


def _folder(
    ref: str, root: Path, shape: tuple[int, ...] | None, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise EvalDataError(f"eval data {ref}: no class folders (expected <class>/<image>.png)")
    index = _class_index(ref, [p.name for p in folders], names)
    images, labels = [], []
    for folder in folders:
        for file in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
            if file.suffix.lower() != ".png":
                raise EvalDataError(f"eval data {ref}: {folder.name}/{file.name} is not a PNG (only PNG is read)")
            try:
                pixels = decode_png(file.read_bytes())
            except PngError as exc:
                raise EvalDataError(f"eval data {ref}: {folder.name}/{file.name}: {exc}") from None
            images.append(_to_chw(pixels, shape))
            labels.append(index[folder.name])
            if len(images) > MAX_SAMPLES:
                raise EvalDataError(f"eval data {ref}: more than {MAX_SAMPLES} images")
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise EvalDataError(f"eval data {ref}: images differ in size ({', '.join(_shape(s) for s in sorted(sizes))})")
    if not images:
        raise EvalDataError(f"eval data {ref}: the class folders hold no PNG images")
    label_names = names or tuple(sorted(index, key=index.__getitem__))
    return np.stack(images).astype(np.float32) / 255.0, np.array(labels, np.int64), label_names


def _class_index(ref: str, folders: list[str], names: tuple[str, ...]) -> dict[str, int]:
    """Folder name -> label: the model's label names, else integer names, else sorted order."""
    if names:
        unknown = [f for f in folders if f not in names]
        if unknown:
            raise EvalDataError(f"eval data {ref}: folder {unknown[0]!r} is not a label of the model {list(names)}")
        return {f: names.index(f) for f in folders}
    if all(f.isdigit() for f in folders):
        return {f: int(f) for f in folders}
    return {f: i for i, f in enumerate(folders)}


def _to_chw(pixels: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """(H, W, c) uint8 -> (C, H, W) with the model's channel count (alpha dropped, gray <-> RGB)."""
    colour = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1]
    want = shape[0] if shape else colour.shape[2]
    if want == colour.shape[2]:
        out = colour
    elif want == 3:
        out = np.repeat(colour, 3, axis=2)
    elif want == 1:
        out = np.rint(colour.astype(np.float64) @ LUMA)[:, :, None].astype(np.uint8)
    else:
        out = colour
    return np.transpose(out, (2, 0, 1))


def _npz(ref: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise EvalDataError(f"eval data {ref}: the .npz needs arrays 'x' and 'y' (has {list(archive.keys())})")
            x, y = archive["x"], archive["y"]
    except ValueError as exc:
        if isinstance(exc, EvalDataError):
            raise
        raise EvalDataError(f"eval data {ref}: unreadable .npz ({exc})") from None
    return _scale(ref, x), _labels(ref, y)


def _parquet(ref: str, path: Path, shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = set(table.column_names)
    label = next((c for c in ("label", "y") if c in columns), None)
    if label is None:
        raise EvalDataError(f"eval data {ref}: the parquet file needs a 'label' column (has {sorted(columns)})")
    y = _labels(ref, np.asarray(table.column(label).to_pylist()))
    if "image" in columns:
        cells = table.column("image").to_pylist()
        blobs: list[Any] = [c.get("bytes") if isinstance(c, dict) else c for c in cells]
        try:
            images = [_to_chw(decode_png(b), shape) for b in blobs]
        except (PngError, TypeError) as exc:
            raise EvalDataError(f"eval data {ref}: column 'image' must hold PNG bytes ({exc})") from None
        if len({im.shape for im in images}) > 1:
            raise EvalDataError(f"eval data {ref}: images differ in size")
        return np.stack(images).astype(np.float32) / 255.0, y
    if "pixels" in columns:
        if shape is None:
            raise EvalDataError(f"eval data {ref}: column 'pixels' needs the model's input shape")
        flat = np.asarray(table.column("pixels").to_pylist(), dtype=np.float64)
        if flat.ndim != 2 or flat.shape[1] != int(np.prod(shape)):
            raise EvalDataError(f"eval data {ref}: each 'pixels' row must hold {int(np.prod(shape))} values")
        return _scale(ref, flat.reshape((-1, *shape))), y
    raise EvalDataError(f"eval data {ref}: the parquet file needs an 'image' (PNG) or 'pixels' column")


def _scale(ref: str, x: np.ndarray) -> np.ndarray:
    """uint8 images to [0, 1]; float images are kept (validated later)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise EvalDataError(f"eval data {ref}: images must be numbers, got {x.dtype}")
    return x.astype(np.float32)


def _labels(ref: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise EvalDataError(f"eval data {ref}: labels must be a 1-D array of integers, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _channels(ref: str, x: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """(N, H, W) gets a channel axis; (N, H, W, C) is moved to (N, C, H, W) when that is the only reading."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        return np.transpose(x, (0, 3, 1, 2))
    if x.ndim != 4:
        raise EvalDataError(f"eval data {ref}: 'x' must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    return x


def _validate(
    ref: str, x: np.ndarray, y: np.ndarray, shape: tuple[int, ...] | None, classes: int, min_per_class: int
) -> None:
    if len(x) != len(y):
        raise EvalDataError(f"eval data {ref}: {len(x)} images but {len(y)} labels")
    if len(y) == 0:
        raise EvalDataError(f"eval data {ref}: no samples")
    if shape is not None and tuple(x.shape[1:]) != shape:
        raise EvalDataError(f"eval data {ref}: images are {_shape(x.shape[1:])}, the model expects {_shape(shape)}")
    if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
        raise EvalDataError(f"eval data {ref}: pixel values must be finite and in [0, 1] (or uint8)")
    if y.min() < 0 or y.max() >= classes:
        found = f"{int(y.min())}..{int(y.max())}"
        raise EvalDataError(f"eval data {ref}: labels must be in 0..{classes - 1}, found {found}")
    counts = np.bincount(y, minlength=classes)
    missing = [str(c) for c in np.flatnonzero(counts == 0)]
    if missing:
        raise EvalDataError(f"eval data {ref}: no samples of class {', '.join(missing)} (every class is needed)")
    few = int(np.argmin(counts))
    if counts[few] < min_per_class:
        raise EvalDataError(
            f"eval data {ref}: class {few} has {counts[few]} samples, at least {min_per_class} per class are needed"
        )


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _summary(ref: str, fmt: str, x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    counts = np.bincount(y, minlength=len(names))
    digest = sha256_bytes(np.ascontiguousarray(x, np.float32).tobytes() + y.astype(np.int64).tobytes())
    return {
        "source": ref,
        "format": fmt,
        "samples": len(y),
        "classes": len(names),
        "per_class": {names[c]: int(counts[c]) for c in range(len(names))},
        "min_per_class": int(counts.min()),
        "shape": [int(s) for s in x.shape[1:]],
        "value_range": [float(x.min()), float(x.max())],
        "digest": digest,
    }
