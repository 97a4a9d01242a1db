"""YAML documents that remember where each value came from.

Policy authors fix what they can find: every problem names the file, the line and
the field, so parsing keeps a map from each value's path to its source line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelgate.evidence import sha256_bytes

PathPart = str | int
DocPath = tuple[PathPart, ...]

# Bounds the walk over aliases so an alias bomb becomes a problem, not a hang.
MAX_NODES = 100_000
MAX_DEPTH = 64
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, so schemas see what the author wrote."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, printable as ``file:line: field: message``."""

    file: str
    line: int | None = None
    column: int | None = None
    field: str = ""
    message: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class YamlDocument:
    """A parsed document: its data, its bytes' digest, and the source line of every value."""

    path: Path
    data: Any
    digest: str
    lines: dict[DocPath, int] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return str(self.path)

    def line_of(self, path: Iterable[PathPart]) -> int:
        """The line of the deepest known value along ``path`` (the document start if none)."""
        parts = tuple(path)
        for end in range(len(parts), -1, -1):
            line = self.lines.get(parts[:end])
            if line is not None:
                return line
        return 1

    def problem(self, path: Sequence[PathPart], message: str) -> Problem:
        return Problem(self.file, self.line_of(path), None, format_path(path), message)


def format_path(path: Iterable[PathPart]) -> str:
    """Render a path the way authors read it: ``spec.rules[2].operator``, ``evidence["a.b"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def load_yaml(path: Path) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse one YAML document; return it with its line map, or the problems that stop parsing."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(file, message="no such file")]
    except OSError as exc:
        return None, [Problem(file, message=f"cannot read: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(file, message=f"not UTF-8 text (byte {exc.start})")]
    return parse_yaml(text, path, sha256_bytes(raw))


def parse_yaml(text: str, path: Path, digest: str) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse YAML text (one document) keeping each value's line; syntax errors carry line and column."""
    file = str(path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [Problem(file, 1, None, "", "empty document")]
        doc = YamlDocument(path, None, digest)
        problems: list[Problem] = []
        walker = _Walker(loader, doc, problems)
        walker.walk(node, ())
        if walker.failed:
            return None, problems
        doc.data = loader.construct_document(node)
        return doc, problems
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(file, exc)]
    except yaml.YAMLError as exc:
        return None, [Problem(file, message=f"YAML syntax error: {exc}")]
    finally:
        loader.dispose()


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    detail = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
    if mark is None:
        return Problem(file, message=f"YAML syntax error: {detail}")
    return Problem(file, mark.line + 1, mark.column + 1, "", f"YAML syntax error: {detail}")


class _Walker:
    """Records the line of every mapping entry and sequence item; flags duplicate keys."""

    def __init__(self, loader: _Loader, doc: YamlDocument, problems: list[Problem]) -> None:
        self.loader = loader
        self.doc = doc
        self.problems = problems
        self.budget = MAX_NODES
        self.merging = 0
        self.failed = False
        self.stack: set[int] = set()
        self.doc.lines[()] = 1

    def walk(self, node: yaml.Node, path: DocPath) -> None:
        if not self._enter(node, path):
            return
        self.stack.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._record(path + (index,), item.start_mark.line + 1)
                self.walk(item, path + (index,))
        self.stack.discard(id(node))

    def _enter(self, node: yaml.Node, path: DocPath) -> bool:
        """Refuse alias bombs, self-referencing aliases and absurd nesting before anything recurses."""
        self.budget -= 1
        if self.budget == 0:
            self._fail(node, f"document too large (over {MAX_NODES} nodes, counting aliases)")
        elif id(node) in self.stack:
            self._fail(node, "recursive alias: a value contains itself")
        elif len(path) > MAX_DEPTH:
            self._fail(node, f"document too large: nested deeper than {MAX_DEPTH} levels")
        return not self.failed

    def _fail(self, node: yaml.Node, message: str) -> None:
        self.failed = True
        self.problems.append(Problem(self.doc.file, node.start_mark.line + 1, None, "", message))

    def _mapping(self, node: yaml.MappingNode, path: DocPath) -> None:
        seen: dict[PathPart, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = self._key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                field = format_path(path + (key,))
                self.problems.append(
                    Problem(self.doc.file, line, None, field, f"duplicate key (first at line {seen[key]})")
                )
            seen.setdefault(key, line)
            self._record(path + (key,), line)
            self.walk(value_node, path + (key,))
        self.merging += 1
        for source in merged:
            # Merged keys (``<<: *anchor``) are located where the anchor wrote them, unless overridden.
            for part in source.value if isinstance(source, yaml.SequenceNode) else [source]:
                self.walk(part, path)
        self.merging -= 1

    def _record(self, path: DocPath, line: int) -> None:
        """The last duplicate key wins, as in the constructed data; merged keys never override."""
        if self.merging:
            self.doc.lines.setdefault(path, line)
        else:
            self.doc.lines[path] = line

    def _key(self, node: yaml.Node) -> PathPart:
        """The key as the constructed data will hold it (so schema error paths find their line)."""
        if not isinstance(node, yaml.ScalarNode):
            return str(node.value)
        value = self.loader.construct_object(node)
        return value if isinstance(value, str | int) and not isinstance(value, bool) else str(node.value)
