"""A small ROC chart as PNG bytes, rasterized in numpy (the evaluation stack has no matplotlib or Pillow).

Log-scale FPR (the low-FPR end is where membership inference matters), linear TPR, the chance
diagonal in gray, one coloured curve per attack with a legend; labels use a built-in 3x5 pixel font.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from tasks.evaluate.png import encode_png

WIDTH, HEIGHT = 320, 240
LEFT, RIGHT, TOP, BOTTOM = 30, 10, 10, 26
SCALE = 2  # font pixels per glyph pixel
COLOURS = ((214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189))
GRID, AXIS, CHANCE = (225, 225, 225), (60, 60, 60), (160, 160, 160)

# 3x5 glyphs, rows top to bottom, 3 bits each (MSB = left pixel).
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0), " ": (0, 0, 0, 0, 0), "A": (2, 5, 7, 5, 5), "C": (7, 4, 4, 4, 7),
    "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4), "I": (7, 2, 2, 2, 7), "L": (4, 4, 4, 4, 7), "N": (5, 7, 7, 7, 5),
    "O": (7, 5, 5, 5, 7), "P": (7, 5, 7, 4, 4), "R": (6, 5, 6, 5, 5), "S": (7, 4, 7, 1, 7), "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7), "B": (6, 5, 6, 5, 6), "D": (6, 5, 5, 5, 6), "G": (7, 4, 5, 5, 7), "H": (5, 5, 7, 5, 5),
    "K": (5, 5, 6, 5, 5), "M": (5, 7, 7, 5, 5), "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "Y": (5, 5, 2, 2, 2),
}  # fmt: skip


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], min_fpr: float = 1e-3) -> bytes:
    """PNG bytes of the ROC curves ``{name: (fpr, tpr)}`` on a log FPR axis from ``min_fpr`` to 1."""
    canvas = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    low = math.floor(math.log10(max(min(min_fpr, 1.0), 1e-6)))
    low = min(low, -1)
    _axes(canvas, low)
    grid = np.logspace(low, 0, 200)
    _polyline(canvas, *_to_pixels(grid, grid, low), CHANCE, thick=False)
    for index, (name, (fpr, tpr)) in enumerate(curves.items()):
        colour = COLOURS[index % len(COLOURS)]
        _polyline(canvas, *_to_pixels(np.asarray(fpr, float), np.asarray(tpr, float), low), colour, thick=True)
        y = TOP + 6 + index * 14
        canvas[y : y + 8, LEFT + 8 : LEFT + 16] = colour
        _text(canvas, name.upper(), LEFT + 20, y - 1, AXIS)
    return encode_png(canvas)


def _to_pixels(fpr: np.ndarray, tpr: np.ndarray, low: int) -> tuple[np.ndarray, np.ndarray]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT - 1, HEIGHT - TOP - BOTTOM - 1
    u = (np.log10(np.clip(fpr, 10.0**low, 1.0)) - low) / -low
    return LEFT + u * plot_w, HEIGHT - BOTTOM - 1 - np.clip(tpr, 0.0, 1.0) * plot_h


def _axes(canvas: np.ndarray, low: int) -> None:
    bottom, right = HEIGHT - BOTTOM - 1, WIDTH - RIGHT - 1
    for decade in range(low, 1):
        x = int(round(_to_pixels(np.array([10.0**decade]), np.array([0.0]), low)[0][0]))
        canvas[TOP:bottom, x] = GRID
        label = "1" if decade == 0 else f"1E{decade}"
        _text(canvas, label, x - len(label) * 4 * SCALE // 2 + 1, bottom + 5, AXIS)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = int(round(_to_pixels(np.array([1.0]), np.array([tick]), low)[1][0]))
        canvas[y, LEFT:right] = GRID
        label = f"{tick:g}".lstrip("0") or "0"
        _text(canvas, label, LEFT - 3 - len(label) * 4 * SCALE, y - 5, AXIS)
    canvas[TOP : bottom + 1, LEFT] = AXIS
    canvas[bottom, LEFT : right + 1] = AXIS
    fpr_x = int(_to_pixels(np.array([10.0 ** (-0.5)]), np.array([0.0]), low)[0][0])
    _text(canvas, "FPR", fpr_x - 3 * 2 * SCALE, bottom + 5, AXIS)
    tpr_y = int(_to_pixels(np.array([1.0]), np.array([0.625]), low)[1][0])
    _text(canvas, "TPR", 2, tpr_y - 5, AXIS)


def _polyline(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int], thick: bool) -> None:
    """Connect consecutive points by sampling each segment densely (one sample per pixel of its length)."""
    if len(xs) < 2:
        return
    lengths = np.maximum(np.abs(np.diff(xs)), np.abs(np.diff(ys))).astype(int) + 1
    t = np.concatenate([np.linspace(0.0, 1.0, n) for n in lengths])
    segment = np.repeat(np.arange(len(lengths)), lengths)
    px = np.rint(xs[segment] + t * (xs[segment + 1] - xs[segment])).astype(int)
    py = np.rint(ys[segment] + t * (ys[segment + 1] - ys[segment])).astype(int)
    offsets = ((0, 0), (1, 0), (0, 1), (1, 1)) if thick else ((0, 0),)
    for dx, dy in offsets:
        canvas[np.clip(py + dy, 0, HEIGHT - 1), np.clip(px + dx, 0, WIDTH - 1)] = colour


def _text(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Draw ``text`` (upper case, digits, ``.-``) with its top-left corner at ``(x, y)``; unknown glyphs are blank."""
    for i, char in enumerate(text):
        rows = _FONT.get(char, _FONT[" "])
        for r, bits in enumerate(rows):
            for c in range(3):
                if bits >> (2 - c) & 1:
                    top, left = y + r * SCALE, x + (i * 4 + c) * SCALE
                    if top >= 0 and left >= 0 and top + SCALE <= HEIGHT and left + SCALE <= WIDTH:
                        canvas[top : top + SCALE, left : left + SCALE] = colour


__all__ = ["roc_png"]
