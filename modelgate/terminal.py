"""Plain-text terminal output: messages are text, never console markup.

Brackets, backslashes and anything else a path or an error message holds are printed exactly
as they are (``/tmp/no[/x]file`` stays ``/tmp/no[/x]file``). Colour is ANSI, only on a
terminal and never under ``NO_COLOR``; tables are drawn here in a few lines, so the scan
path starts without importing rich.
"""

from __future__ import annotations

import os
import sys
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TextIO

_ANSI = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "cyan": "36",
    "bold red": "1;31",
}


def colour_enabled(stream: TextIO) -> bool:
    """ANSI colour only on a terminal and only when neither NO_COLOR nor TERM=dumb asks otherwise."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def styled(text: str, style: str, stream: TextIO) -> str:
    """``text`` wrapped in the ANSI codes of ``style`` when ``stream`` shows colour."""
    code = _ANSI.get(style)
    if not code or not colour_enabled(stream):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def safe_text(text: str) -> str:
    """``text`` with control characters (ANSI escapes from a hostile file name) made visible."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\t" else repr(c)[1:-1] for c in text)


def echo(message: str, stream: TextIO | None = None) -> None:
    """Print ``message`` exactly as text (stdout by default)."""
    out = stream if stream is not None else sys.stdout
    out.write(message + "\n")
    out.flush()


def error_line(message: str, label: str = "error") -> None:
    """``<label>: <message>`` on stderr (``error:`` by default), one line, the message as plain text."""
    text = safe_text(" ".join(message.split("\n")).strip() or "unknown error")
    echo(f"{styled(label + ':', 'red', sys.stderr)} {text}", sys.stderr)


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide characters take two)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell_lines(text: str, limit: int | None) -> list[str]:
    lines = [safe_text(line) for line in text.split("\n")]
    if limit is None:
        return lines
    out: list[str] = []
    for line in lines:
        indent = line[: len(line) - len(line.lstrip(" "))]
        out += textwrap.wrap(line, limit, subsequent_indent=indent + "  ", break_on_hyphens=False) or [""]
    return out


def _pad(text: str, size: int, right: bool) -> str:
    gap = " " * (size - width(text))
    return gap + text if right else text + gap


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    right: Sequence[str] = (),
    styles: Sequence[Sequence[str | None]] | None = None,
    wrap: Mapping[str, int] | None = None,
    stream: TextIO | None = None,
) -> str:
    """A boxed table as one string; a cell may hold several lines, and the columns named in ``wrap``
    are wrapped at that many characters; ``styles[r][c]`` colours a cell on a terminal only. Cell
    text is printed as it is (control characters made visible)."""
    out = stream if stream is not None else sys.stdout
    limits = [(wrap or {}).get(h) for h in headers]
    cells = [[_cell_lines(str(c), limits[i]) for i, c in enumerate(row)] for row in rows]
    sizes = [max([width(h), *(width(line) for row in cells for line in row[i])]) for i, h in enumerate(headers)]
    aligned = [h in right for h in headers]

    def rule(left: str, mid: str, end: str) -> str:
        return left + mid.join("─" * (s + 2) for s in sizes) + end

    def physical(values: Sequence[str], row_styles: Sequence[str | None] | None) -> str:
        parts = []
        for i, value in enumerate(values):
            text = _pad(value, sizes[i], aligned[i])
            style = row_styles[i] if row_styles else None
            parts.append(f" {styled(text, style, out) if style else text} ")
        return "│" + "│".join(parts) + "│"

    lines = [safe_text(title)] if title else []
    lines += [rule("┌", "┬", "┐"), physical(headers, None), rule("├", "┼", "┤")]
    for r, row in enumerate(cells):
        height = max(len(cell) for cell in row)
        for k in range(height):
            values = [cell[k] if k < len(cell) else "" for cell in row]
            lines.append(physical(values, styles[r] if styles else None))
    lines.append(rule("└", "┴", "┘"))
    return "\n".join(lines)


def binary_size(size: int) -> str:
    """``12 B``, ``3.4 KiB`` ... ``1.2 GiB``: file sizes in tables."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
