"""Hydra / OmegaConf ``_target_`` in YAML or JSON configs: a callable imported and called at load time.

``hydra.utils.instantiate`` (NeMo's ``model_config.yaml`` inside a ``.nemo`` archive, and
any Hydra-style config in a model folder) imports the dotted ``_target_`` and calls it with
the mapping's other keys (``_args_`` positionally, ``_partial_`` as a ``functools.partial``).
Every target is therefore code run at load time: a known primitive (``os.system``,
``subprocess.*``, ``builtins.eval``, ``importlib.*``, ``torch.load``, ...) is ``dangerous``,
any other target is ``code`` (a policy may waive it by digest). YAML is only *composed*
(``yaml.compose`` with the safe loader: a node graph, nothing constructed), so the YAML
itself cannot build objects; a ``!!python/...`` tag (what ``yaml.unsafe_load`` would
execute) is dangerous too. Duplicate keys are all checked: loaders disagree on which wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import yaml

from modelgate.scan.allowlist import Verdict, classify
from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity

TARGET_KEYS = frozenset({"_target_"})
CALL_KEYS = frozenset({"_args_", "_partial_"})
_PYTHON_TAG = "tag:yaml.org,2002:python/"
_MAX_FINDINGS = 100
_MAX_DEPTH = 512
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Callables that load more code or unpickle, outside what allowlist.classify already knows.
_DANGEROUS_TARGETS = frozenset(
    {
        "hydra.utils.instantiate",
        "hydra.utils.call",
        "hydra.utils.get_method",
        "hydra.utils.get_class",
        "hydra.utils.get_object",
        "hydra._internal.utils._locate",
        "hydra._internal.instantiate._instantiate2.instantiate",
        "omegaconf.OmegaConf.load",
        "yaml.load",
        "yaml.unsafe_load",
        "yaml.full_load",
        "yaml.load_all",
        "yaml.unsafe_load_all",
        "keras.saving.load_model",
        "keras.models.load_model",
        "tensorflow.saved_model.load",
        "transformers.AutoModel.from_pretrained",
    }
)


def _target_verdict(target: str) -> Category:
    """DANGEROUS for a known primitive (any module/attribute split of the dotted path), else CODE."""
    if target in _DANGEROUS_TARGETS or any(target.startswith(t + ".") for t in _DANGEROUS_TARGETS):
        return Category.DANGEROUS
    parts = target.split(".")
    if any(p.startswith("__") and p.endswith("__") for p in parts):
        return Category.DANGEROUS
    for cut in range(1, len(parts)):
        if classify(".".join(parts[:cut]), ".".join(parts[cut:])) is Verdict.DANGEROUS:
            return Category.DANGEROUS
    # A bare builtin name (``eval``) is looked up in builtins by hydra's _locate.
    if len(parts) == 1 and classify("builtins", target) is Verdict.DANGEROUS:
        return Category.DANGEROUS
    return Category.CODE


class _Collector:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.count = 0

    def add(self, rule_id: str, category: Category, message: str) -> None:
        self.count += 1
        if self.count <= _MAX_FINDINGS:
            severity = Severity.CRITICAL if category is Category.DANGEROUS else Severity.HIGH
            if category is Category.LIMIT:
                severity = Severity.MEDIUM
            self.ctx.add(rule_id, category, severity, message)

    def target(self, value: object, keys: set[str], path: str) -> None:
        extra = sorted(keys & CALL_KEYS)
        with_keys = f" (with {', '.join(extra)})" if extra else ""
        if not isinstance(value, str) or not _DOTTED.match(value.strip()):
            self.add(
                "config.hydra-target",
                Category.DANGEROUS,
                f"_target_ at {path} is not a plain dotted name ({str(value)[:80]!r}): callee decided at load time",
            )
            return
        name = value.strip()
        category = _target_verdict(name)
        what = "a known code-execution, file or loader primitive" if category is Category.DANGEROUS else "code"
        self.add(
            "config.hydra-target",
            category,
            f"_target_ {name!r} at {path}{with_keys}: instantiating the config calls {what}",
        )

    def mapping(self, pairs: list[tuple[object, object]], path: str) -> None:
        keys = {k for k, _ in pairs if isinstance(k, str)}
        for key, value in pairs:
            if key in TARGET_KEYS:
                self.target(value, keys, path)
        if keys & CALL_KEYS and not keys & TARGET_KEYS:
            self.add(
                "config.hydra-target",
                Category.CODE,
                f"{', '.join(sorted(keys & CALL_KEYS))} at {path} without _target_: a Hydra call spec",
            )

    def finish(self) -> None:
        if self.count > _MAX_FINDINGS:
            self.ctx.add(
                "config.hydra-target",
                Category.CODE,
                Severity.HIGH,
                f"{self.count - _MAX_FINDINGS} more _target_ findings not listed",
            )


def _json_pairs(text: str) -> object:
    """JSON with every (key, value) pair kept as a list, duplicates included."""
    return json.loads(text, object_pairs_hook=lambda pairs: _Pairs(pairs))


class _Pairs(list[tuple[str, object]]):
    """A JSON object as its pairs in order (duplicate keys are not collapsed)."""


def _walk_json(node: object, path: str, depth: int, out: _Collector) -> None:
    if depth > _MAX_DEPTH:
        out.add("config.depth-limit", Category.LIMIT, f"config nested deeper than {_MAX_DEPTH} at {path}")
        return
    if isinstance(node, _Pairs):
        out.mapping(list(node), path)
        for key, value in node:
            _walk_json(value, f"{path}.{key}", depth + 1, out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk_json(item, f"{path}[{i}]", depth + 1, out)


def _scalar(node: yaml.Node) -> object:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _yaml_nodes(root: yaml.Node) -> Iterator[tuple[yaml.Node, str]]:
    """Every node once (anchors/aliases share nodes: a billion-laughs file stays linear)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str, int]] = [(root, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if id(node) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(node))
        yield node, path
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.append((value, f"{path}.{_scalar(key)}", depth + 1))
                stack.append((key, f"{path}.<key>", depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in reversed(list(enumerate(node.value))):
                stack.append((item, f"{path}[{i}]", depth + 1))


def _check_yaml(root: yaml.Node, out: _Collector) -> None:
    for node, path in _yaml_nodes(root):
        if isinstance(node.tag, str) and node.tag.startswith(_PYTHON_TAG):
            out.add(
                "config.yaml-python-tag",
                Category.DANGEROUS,
                f"YAML tag {node.tag!r} at {path}: yaml.unsafe_load builds Python objects from it",
            )
        if isinstance(node, yaml.MappingNode):
            pairs = [(_scalar(k), _scalar(v) if isinstance(v, yaml.ScalarNode) else v) for k, v in node.value]
            out.mapping([(k, v if not isinstance(v, yaml.Node) else _Opaque()) for k, v in pairs], path)


class _Opaque:
    """A non-scalar YAML value (a ``_target_`` that is a mapping or list is not a dotted name)."""

    def __str__(self) -> str:
        return "<non-scalar>"


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def check_text(text: str, ctx: ScanContext) -> bool:
    """Check a text file's ``_target_`` entries; True if it is a YAML or JSON mapping config (checked).

    Text larger than ``max_header_bytes`` is not parsed: if it mentions ``_target_`` that is a
    ``limit`` finding (fail closed), otherwise it is not treated as a config.
    """
    if len(text) > ctx.limits.max_header_bytes:
        if "_target_" in text or _PYTHON_TAG in text or "!!python/" in text:
            ctx.add(
                "config.size-limit",
                Category.LIMIT,
                Severity.MEDIUM,
                f"config text of {len(text)} bytes mentions _target_ or Python tags and is too large to check",
            )
        return False
    out = _Collector(ctx)
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        try:
            node = _json_pairs(text)
        except (ValueError, RecursionError):
            node = None
        if node is not None:
            _walk_json(node, "$", 0, out)
            out.finish()
            return isinstance(node, _Pairs)
    root = _compose(text)
    if root is None:  # no YAML loader (OmegaConf's is stricter than this one) reads it either
        return False
    _check_yaml(root, out)
    out.finish()
    return isinstance(root, yaml.MappingNode)
