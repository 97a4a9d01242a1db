"""Strict parameters: every section of ``params.yaml`` and every override is checked before a run starts.

A mistyped key (``anomaly_treshold``) or a value of the wrong type would otherwise be ignored and
the default would apply, silently weakening the gate. Each section is checked against the tree of
defaults it overrides (the one source of its keys and types): an unknown key is an error naming
the nearest valid one, a value must have its default's type (an int may stand for a float; a
bool never stands for a number; ``null`` never stands for a value), and a list's items must have
the type of the default's items. Sections whose checks need more than a defaults tree (the
``intake:`` request) pass a validator instead.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelgate.errors import ModelgateError

Path_ = tuple[str, ...]
# A section's schema: its defaults tree, or a function returning the problems of a given section.
Validator = Callable[[Mapping[str, Any]], list[tuple[Path_, str]]]
Schema = Mapping[str, Any] | Validator


class ParamsError(ModelgateError):
    """A parameter file or override names an unknown key or a value of the wrong type."""


def nearest(key: str, options: Sequence[str]) -> str | None:
    """The valid name closest to a mistyped ``key`` (None if nothing is close)."""
    found = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def _kind(default: object) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list | tuple):
        return "a list"
    return "a mapping"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar_ok(value: object, default: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str)
    return False


def _value_problems(value: object, default: object, path: Path_) -> list[tuple[Path_, str]]:
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            return [(path, f"expected a mapping of {', '.join(map(str, default))}, got {_shown(value)}")]
        return tree_problems(value, default, path)
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            return [(path, f"expected a list, got {_shown(value)}")]
        if not default:  # no item type to compare with: any plain values
            bad = [v for v in value if not isinstance(v, str | int | float | bool)]
            return [(path, f"expected a list of plain values, got {_shown(bad[0])}")] if bad else []
        item = default[0]
        for index, element in enumerate(value):
            if not _scalar_ok(element, item):
                return [(path + (str(index),), f"expected {_kind(item)}, got {_shown(element)}")]
        return []
    if value is None:
        return [(path, f"expected {_kind(default)} (null is not a value; remove the key to keep the default)")]
    if not _scalar_ok(value, default):
        return [(path, f"expected {_kind(default)}, got {_shown(value)}")]
    return []


def tree_problems(given: Mapping[str, Any], defaults: Mapping[str, Any], path: Path_ = ()) -> list[tuple[Path_, str]]:
    """Every unknown key and wrongly typed value of ``given`` against the ``defaults`` tree."""
    found: list[tuple[Path_, str]] = []
    for key, value in given.items():
        where = path + (str(key),)
        if key not in defaults:
            close = nearest(str(key), [str(k) for k in defaults])
            hint = f"did you mean {close!r}?" if close else f"valid keys: {', '.join(map(str, defaults))}"
            found.append((where, f"unknown key ({hint})"))
            continue
        found += _value_problems(value, defaults[key], where)
    return found


def section_problems(given: object, schema: Schema, path: Path_) -> list[tuple[Path_, str]]:
    if not isinstance(given, Mapping):
        return [(path, f"expected a mapping, got {_shown(given)}")]
    if callable(schema):
        return [(path + where, message) for where, message in schema(given)]
    return tree_problems(given, schema, path)


def raise_first(problems: list[tuple[Path_, str]], source: str, line_of: Callable[[Path_], int | None] | None) -> None:
    """One line for the first problem (plus how many more), naming the file, the line and the key."""
    if not problems:
        return
    where, message = problems[0]
    line = line_of(where) if line_of else None
    place = f"{source}:{line}" if line else source
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    raise ParamsError(f"{place}: {'.'.join(where)}: {message}{more}")


def check_section(given: object, schema: Schema, *, section: str, source: str) -> None:
    """Raise ``ParamsError`` for the first unknown key or wrong type of one section (an override)."""
    raise_first(section_problems(given, schema, (section,)), source, None)


def check_document(data: object, sections: Mapping[str, Schema], *, source: str, line_of: Any = None) -> None:
    """Every top-level section of a params document against its schema; unknown sections are errors."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise ParamsError(f"{source}: expected a mapping of sections ({', '.join(sections)})")
    problems: list[tuple[Path_, str]] = []
    for name, body in data.items():
        if name not in sections:
            close = nearest(str(name), list(sections))
            hint = f"did you mean {close!r}?" if close else f"valid sections: {', '.join(sections)}"
            problems.append(((str(name),), f"unknown section ({hint})"))
        elif body is not None:
            problems += section_problems(body, sections[name], (str(name),))
    raise_first(problems, source, line_of)


def read_document(path: Path) -> tuple[dict[str, Any], Callable[[Path_], int | None]]:
    """A params file parsed strictly (duplicate keys, syntax errors: ``ParamsError`` with the line)."""
    from modelgate.policy.yamlio import load_yaml

    doc, problems = load_yaml(path)
    if problems:
        raise ParamsError(str(problems[0]))
    data = doc.data if doc is not None else None
    if data is None:
        return {}, lambda _where: None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {_shown(data)}")
    assert doc is not None
    return data, lambda where: doc.line_of(where)
