"""Keras model configs (``.keras`` ``config.json``, ``.h5`` ``model_config``): code and custom objects.

A Lambda layer carries marshalled Python bytecode; a custom object needs its
class imported at load time. Both hide at any depth (a Lambda inside a Sequential
inside a Functional model), so the whole JSON tree is walked. Keras 3 configs name
each object's ``module``: the (module, class_name) pair must be one Keras really
deserializes as a modeling object (``keras_names``); a name under ``keras.utils``,
``keras.saving``, ... is dangerous (Keras calls it with config arguments), anything
else is unknown. Keras 2 configs only have ``class_name``, checked against the
standard Keras classes.
"""

from __future__ import annotations

import base64
import binascii

from modelgate.scan import keras_names
from modelgate.scan.allowlist import Verdict, classify
from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity

_CODE_CLASSES = frozenset({"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"})
_KERAS_ALIASES = ("tensorflow.python.keras", "tensorflow.keras", "tf_keras", "keras")
_VOCABULARY_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})
_MAX_DEPTH = 256
_MAX_FINDINGS = 100
_PAIRS = keras_names.pairs()
_BUILTIN_FUNCTIONS = keras_names.builtin_functions()
_CLASS_NAMES = frozenset(name for _, name in _PAIRS) | keras_names.KERAS2_CLASSES


class _Walker:
    def __init__(self, ctx: ScanContext, keras3: bool) -> None:
        self.ctx = ctx
        self.keras3 = keras3
        self.count = 0

    def add(self, rule_id: str, category: Category, message: str) -> None:
        self.count += 1
        if self.count <= _MAX_FINDINGS:
            self.ctx.add(rule_id, category, Severity.HIGH, message)

    def walk(self, node: object, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.add("keras.depth-limit", Category.LIMIT, f"config nested deeper than {_MAX_DEPTH} at {path}")
            return
        if isinstance(node, list):
            for i, item in enumerate(node):
                self.walk(item, f"{path}[{i}]", depth + 1)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("class_name"), str):
            self.check_object(node, path)
        for key, value in node.items():
            self.walk(value, f"{path}.{key}", depth + 1)

    def check_object(self, node: dict[str, object], path: str) -> None:
        cls = str(node["class_name"])
        label = f"{cls} at {path}"
        if cls in _CODE_CLASSES:
            self.add("keras.lambda", Category.CODE, f"{label}: a Lambda layer carries Python code run at load time")
            return
        if not self.keras3:
            if not _standard(cls):
                self.add("keras.custom-object", Category.UNKNOWN, f"{label} is not a standard Keras class: custom code")
            return
        if cls in keras_names.VALUE_CLASSES:
            return
        module, registered = node.get("module"), node.get("registered_name")
        name = node.get("config") if cls == "function" else cls
        if not isinstance(name, str) or not (module is None or isinstance(module, str)):
            self.add("keras.custom-object", Category.UNKNOWN, f"{label}: module or name is not a string")
            return
        full = f"{module}.{name}"
        if not _allowed(cls, module, name):
            if _dangerous(module, name):
                what = "downloads, reads or writes files, loads code or changes loader settings"
                self.add("keras.dangerous-object", Category.DANGEROUS, f"{label} names {full!r}, which {what}")
                self.torch_module(node, path)
            else:
                self.add("keras.custom-object", Category.UNKNOWN, f"{label} names {full!r}: not a standard Keras class")
            return
        if registered is not None and registered not in (cls, name):
            self.add("keras.custom-object", Category.UNKNOWN, f"{label} is registered as custom {registered!r}")
            return
        self.check_config(cls, node.get("config"), label)

    def check_config(self, cls: str, config: object, label: str) -> None:
        if cls in _VOCABULARY_LAYERS and isinstance(config, dict) and isinstance(config.get("vocabulary"), str):
            self.add(
                "keras.dangerous-object",
                Category.DANGEROUS,
                f"{label} reads its vocabulary from the file {config['vocabulary']!r} on the loading machine",
            )

    def torch_module(self, node: dict[str, object], path: str) -> None:
        """TorchModuleWrapper carries a torch.load pickle: scan it as a nested member too."""
        config = node.get("config")
        blob = config.get("module") if isinstance(config, dict) else None
        if self.ctx.nested is None:
            return
        raw: bytes | None = None
        if isinstance(blob, dict) and blob.get("class_name") == "__bytes__":  # keras <= 3.8: raw bytes
            value = blob.get("config", {}).get("value") if isinstance(blob.get("config"), dict) else None
            raw = value.encode("utf-8") if isinstance(value, str) else None
        elif isinstance(blob, str):  # keras >= 3.9: base64
            try:
                raw = base64.b64decode(blob.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raw = None
        if raw:
            self.ctx.scan_nested(raw, f"{path}.config.module")


def _keras_module(module: str) -> str | None:
    """``module`` with tf.keras / tf_keras spelled ``keras``; None outside Keras."""
    for alias in _KERAS_ALIASES:
        if module == alias or module.startswith(alias + "."):
            return "keras" + module[len(alias) :]
    return None


def _dangerous(module: str | None, name: str) -> bool:
    if any(p.startswith("__") and p.endswith("__") for p in f"{module}.{name}".split(".")):
        return True
    if module is None:
        return False
    keras = _keras_module(module)
    if keras is None:
        parts = f"{module}.{name}".split(".")
        splits = ((".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts)))
        return any(classify(mod, rest) is Verdict.DANGEROUS for mod, rest in splits)
    full = f"{keras}.{name}"
    public = "keras." + full.removeprefix("keras.src.") if full.startswith("keras.src.") else full
    return any(
        candidate == prefix or candidate.startswith(prefix + ".")
        for candidate in (full, public)
        for prefix in keras_names.DANGEROUS_PREFIXES
    )


def _allowed(cls: str, module: str | None, name: str) -> bool:
    if module is None:  # resolved only through the consumer's registered objects: must be a standard name
        return cls != "function" and _standard(cls)
    keras = _keras_module(module)
    if cls == "function":
        if module == "builtins":
            return name in _BUILTIN_FUNCTIONS
        return keras is not None and name in keras_names.FUNCTIONS.get(keras, frozenset())
    return keras is not None and (keras, name) in _PAIRS


def _standard(cls: str) -> bool:
    return cls.removeprefix("Custom>") in _CLASS_NAMES


def _has_module_keys(node: object, depth: int = 0) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if isinstance(node, dict):
        return "module" in node or any(_has_module_keys(v, depth + 1) for v in node.values())
    if isinstance(node, list):
        return any(_has_module_keys(v, depth + 1) for v in node)
    return False


def check(config: object, ctx: ScanContext, *, root: str = "$") -> None:
    """Report Lambda layers (code) and custom objects (unknown) anywhere in a Keras config."""
    walker = _Walker(ctx, keras3=_has_module_keys(config))
    walker.walk(config, root, 0)
    if walker.count > _MAX_FINDINGS:
        ctx.add(
            "keras.custom-object",
            Category.UNKNOWN,
            Severity.HIGH,
            f"{walker.count - _MAX_FINDINGS} more Keras findings not listed",
        )
