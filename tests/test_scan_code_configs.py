"""Content that names code: Keras config objects, Hydra ``_target_``, GGUF chat templates, SavedModel ops.

Every malicious sample is first proven to run its payload with the real loader in a child
process (tests/live.py); every benign neighbour is loaded by the real loader and must scan safe.
The SavedModel graphs here are built by hand to reach every path-flow case; the real ones, built,
loaded and run by TensorFlow 2.21, are in tests/test_scan_saved_model_live.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelgate.scan import config_targets, scan_path
from modelgate.scan.base import ScanContext
from modelgate.scan.findings import BLOCKING, Category
from modelgate.scan.jinja_template import check_template
from tests.live import PAYLOAD_COMMAND, loads_cleanly, runs_payload

TEMPLATES = Path(__file__).parent / "chat_templates"


def _categories(report: Any) -> set[Category]:
    return {f.category for f in report.findings}


# --------------------------------------------------------------------------- Keras 3 configs

# The real loaders, each at the version that runs the payload, live beside the venv (Makefile: make
# install puts them in .venv-loaders/); a folder named by the environment variable wins.
_LOADERS = Path(__file__).resolve().parents[1] / ".venv-loaders"
_KERAS38 = os.environ.get("MODELGATE_KERAS_3_8", str(_LOADERS / "keras38"))


def _missing_loader(why: str) -> None:
    """Without the loader the payload proof cannot run: a skip for a developer, a failure in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (make install puts it in .venv-loaders/)")
    pytest.skip(why)


_KERAS_LOAD = f"import os, sys; sys.path.insert(0, {_KERAS38!r}); os.environ['KERAS_BACKEND'] = 'torch'; import keras; "
KERAS_SAFE = _KERAS_LOAD + "keras.saving.load_model(sys.argv[1])"
KERAS_UNSAFE = _KERAS_LOAD + "keras.saving.load_model(sys.argv[1], safe_mode=False)"


def _layer(module: str, cls: str, config: dict[str, Any], name: str, inbound: list[Any]) -> dict[str, Any]:
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
    return _layer("keras.layers", "InputLayer", config, "input", [])


def _functional(layers: list[dict[str, Any]], output: str) -> dict[str, Any]:
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


def _keras_file(path: Path, config: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return path


def _call_layer(module: str, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A Functional 'layer' that resolves to a plain function: Keras calls it with the node's kwargs."""
    return _layer(module, name, {}, "call", [{"args": [], "kwargs": kwargs}])


class _System:
    """A pickle that runs the payload when loaded (only in the child process)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, (PAYLOAD_COMMAND,))


def _torch_module_wrapper(*, base64_blob: bool = False) -> dict[str, Any]:
    """keras <= 3.8 stores the torch.save bytes as __bytes__ (a protocol-0 pickle survives UTF-8); 3.9+ base64."""
    raw = pickle.dumps(_System(), protocol=0)
    blob: Any = (
        base64.b64encode(raw).decode()
        if base64_blob
        else {"class_name": "__bytes__", "config": {"value": raw.decode()}}
    )
    config = {"name": "wrapped", "module": blob, "trainable": True, "dtype": "float32"}
    return _layer("keras.layers", "TorchModuleWrapper", config, "wrapped", [[["input", 0, 0, {}]]])


def test_keras_get_file_is_dangerous(tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"x")
    kwargs = {
        "fname": "modelgate-payload-ran",
        "origin": source.resolve().as_uri(),
        "cache_dir": ".",
        "cache_subdir": ".",
    }
    path = _keras_file(
        tmp_path / "get_file.keras", _functional([_call_layer("keras.utils", "get_file", kwargs)], "call")
    )
    assert runs_payload(path, KERAS_SAFE)  # keras 3.8 calls keras.utils.get_file even in safe mode
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.rule_id == "keras.dangerous-object" and "keras.utils.get_file" in f.message for f in report.findings)


def test_keras_enable_unsafe_and_lambda_block(tmp_path: Path) -> None:
    """A 'layer' that calls keras.config.enable_unsafe_deserialization (CVE-2025-1550 shape) next to a Lambda.

    Keras builds every layer before it calls any, so the unlock alone does not reach the Lambda
    here; the payload is proven with safe_mode=False (what a consumer that trusts the file does)."""
    from tests.fail_closed_samples import keras_unlock_and_lambda

    path = _keras_file(tmp_path / "unlock.keras", keras_unlock_and_lambda(PAYLOAD_COMMAND))
    assert runs_payload(path, KERAS_UNSAFE)
    report = scan_path(path)
    rules = {f.rule_id for f in report.findings}
    assert {"keras.dangerous-object", "keras.lambda"} <= rules
    assert report.verdict == "unsafe"


def test_keras_torch_module_wrapper_pickle_is_dangerous(tmp_path: Path) -> None:
    """keras >= 3.9 torch.load(weights_only=False)s the base64 blob under safe_mode=False; the pinned 3.8
    torch.load()s raw bytes, which torch >= 2.6 reads weights-only: the proof needs a newer keras folder."""
    newer = os.environ.get("MODELGATE_KERAS_3_9_PLUS", str(_LOADERS / "keras315"))
    if not newer or not Path(newer, "keras").is_dir():
        _missing_loader("set MODELGATE_KERAS_3_9_PLUS to a keras>=3.9 folder to prove the payload runs")
    path = _keras_file(tmp_path / "b64.keras", _functional([_torch_module_wrapper(base64_blob=True)], "wrapped"))
    assert runs_payload(
        path,
        f"import sys; sys.path.insert(0, {newer!r}); "
        + KERAS_UNSAFE.replace(f"sys.path.insert(0, {_KERAS38!r}); ", ""),
    )
    legacy = _keras_file(tmp_path / "raw.keras", _functional([_torch_module_wrapper()], "wrapped"))
    for sample in (path, legacy):
        report = scan_path(sample)
        assert any(f.rule_id == "keras.dangerous-object" for f in report.findings)
        assert any(f.global_name in ("posix.system", "os.system") for f in report.findings)  # the pickle, scanned


@pytest.mark.parametrize(
    ("module", "name", "category"),
    [
        ("keras.utils", "get_file", Category.DANGEROUS),
        ("keras.src.utils.file_utils", "get_file", Category.DANGEROUS),
        ("keras.saving", "load_model", Category.DANGEROUS),
        ("keras.src.saving.saving_api", "load_model", Category.DANGEROUS),
        ("keras.models", "load_model", Category.DANGEROUS),
        ("keras.config", "enable_unsafe_deserialization", Category.DANGEROUS),
        ("keras.layers", "TFSMLayer", Category.DANGEROUS),
        ("tf_keras.utils", "get_file", Category.DANGEROUS),
        ("os", "system", Category.DANGEROUS),
        ("keras.ops", "add", Category.UNKNOWN),
        ("keras.layers", "JaxLayer", Category.UNKNOWN),
        ("keras.layers", "Layer", Category.UNKNOWN),
        ("keras", "Dense", Category.UNKNOWN),
        ("keras_hub.models", "GemmaBackbone", Category.UNKNOWN),
    ],
)
def test_keras_non_modeling_objects_block(tmp_path: Path, module: str, name: str, category: Category) -> None:
    path = _keras_file(tmp_path / "m.keras", _functional([_call_layer(module, name, {})], "call"))
    report = scan_path(path)
    assert category in _categories(report)
    assert report.verdict == "unsafe"


def test_keras_custom_registered_name_and_function_names(tmp_path: Path) -> None:
    dense = _layer("keras.layers", "Dense", {"units": 2, "name": "d"}, "d", [])
    dense["registered_name"] = "MyPkg>Dense"
    evil_fn = {"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "function"}
    odd_fn = {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}
    act = _layer("keras.layers", "Activation", {"activation": evil_fn, "name": "a"}, "a", [])
    act2 = _layer("keras.layers", "Activation", {"activation": odd_fn, "name": "b"}, "b", [])
    report = scan_path(_keras_file(tmp_path / "m.keras", _functional([dense, act, act2], "d")))
    messages = " ".join(f.message for f in report.findings)
    assert "MyPkg>Dense" in messages and "keras.utils.get_file" in messages and "builtins.exec" in messages


def test_keras_vocabulary_file_is_dangerous(tmp_path: Path) -> None:
    lookup = _layer("keras.layers", "StringLookup", {"vocabulary": "/etc/passwd", "name": "s"}, "s", [])
    report = scan_path(_keras_file(tmp_path / "m.keras", _functional([lookup], "s")))
    assert any(f.rule_id == "keras.dangerous-object" and "/etc/passwd" in f.message for f in report.findings)


def _save_real_keras(path: Path, kind: str) -> None:
    code = f"""
import os, sys
sys.path.insert(0, {_KERAS38!r})
os.environ["KERAS_BACKEND"] = "torch"
import keras
from keras import layers
kind = {kind!r}
if kind == "sequential":
    reg = keras.regularizers.L2()
    m = keras.Sequential([keras.Input((8,)), layers.Dense(4, activation="gelu", kernel_regularizer=reg),
                          layers.LayerNormalization(), layers.Dropout(0.1), layers.Dense(2, activation="softmax")])
    m.compile(optimizer=keras.optimizers.AdamW(), loss=keras.losses.CategoricalCrossentropy(),
              metrics=[keras.metrics.CategoricalAccuracy(), "mae"])
elif kind == "functional":
    inp = keras.Input((5, 8))
    x = layers.LSTM(4, return_sequences=True)(inp)
    x = layers.MultiHeadAttention(2, 4)(x, x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(1, activation=keras.activations.sigmoid, kernel_constraint=keras.constraints.MaxNorm(2))(x)
    m = keras.Model(inp, out)
    m.compile(keras.optimizers.RMSprop(keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)),
              "binary_crossentropy", metrics=[keras.metrics.AUC(), keras.metrics.binary_accuracy])
else:
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    m = keras.Model(inp, layers.Dense(3)(x))
    m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
m.save(sys.argv[1])
"""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("kind", ["sequential", "functional", "conv"])
def test_real_keras_models_pass(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.keras"
    _save_real_keras(path, kind)
    assert loads_cleanly(path, KERAS_SAFE)
    report = scan_path(path)
    assert report.verdict == "safe", [f.message for f in report.findings]


# --------------------------------------------------------------------------- Hydra _target_

HYDRA = "import sys, hydra.utils, omegaconf; hydra.utils.instantiate(omegaconf.OmegaConf.load(sys.argv[1]))"
# hydra-core 1.3.8 (pinned) refuses os.system & co. by its own target policy; hydra-core <= 1.3.2 (what
# NeMo pins) calls them. The payload proofs need such a hydra: MODELGATE_VULNERABLE_HYDRA names a folder
# with it (pip install --target DIR --no-deps hydra-core==1.3.2).
_OLD_HYDRA = os.environ.get("MODELGATE_VULNERABLE_HYDRA", str(_LOADERS / "hydra132"))


def _vulnerable(loader: str) -> str:
    if not _OLD_HYDRA or not Path(_OLD_HYDRA, "hydra").is_dir():
        _missing_loader("set MODELGATE_VULNERABLE_HYDRA to a hydra-core<=1.3.2 folder to prove the payload runs")
    return f"import sys; sys.path.insert(0, {_OLD_HYDRA!r}); " + loader


NEMO = (
    "import sys, tarfile, hydra.utils, omegaconf; t = tarfile.open(sys.argv[1]); "
    "m = [n for n in t.getnames() if n.endswith('model_config.yaml')][0]; "
    "hydra.utils.instantiate(omegaconf.OmegaConf.create(t.extractfile(m).read().decode()))"
)

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


@pytest.mark.parametrize("name", sorted(MALICIOUS_CONFIGS))
def test_hydra_targets_that_run_code_are_dangerous(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(MALICIOUS_CONFIGS[name])
    assert runs_payload(path, _vulnerable(HYDRA))
    ctx = ScanContext(root=tmp_path, file=name)
    assert config_targets.check_text(path.read_text(), ctx)
    assert Category.DANGEROUS in {f.category for f in ctx.findings}


def test_hydra_benign_target_is_code_and_plain_config_passes(tmp_path: Path) -> None:
    linear = tmp_path / "linear.yaml"
    linear.write_text("model:\n  _target_: torch.nn.Linear\n  in_features: 4\n  out_features: 2\n")
    assert loads_cleanly(linear, HYDRA)
    ctx = ScanContext(root=tmp_path, file="linear.yaml")
    assert config_targets.check_text(linear.read_text(), ctx)
    assert [f.category for f in ctx.findings] == [Category.CODE]
    plain = tmp_path / "plain.yaml"
    plain.write_text("model:\n  hidden: 4\n  layers: [1, 2]\noptim:\n  lr: 0.001\n  name: adam\n")
    assert loads_cleanly(plain, HYDRA)
    ctx = ScanContext(root=tmp_path, file="plain.yaml")
    assert config_targets.check_text(plain.read_text(), ctx) and ctx.findings == []
    ctx = ScanContext(root=tmp_path, file="README.md")
    assert not config_targets.check_text("# Model\n\nSome *markdown* text.\n\n- a\n- b\n", ctx) and ctx.findings == []


def test_yaml_python_tags_are_dangerous_and_never_built(tmp_path: Path) -> None:
    text = f"x: !!python/object/apply:os.system [{PAYLOAD_COMMAND!r}]\n"
    path = tmp_path / "tag.yaml"
    path.write_text(text)
    assert runs_payload(path, "import sys, yaml; yaml.unsafe_load(open(sys.argv[1]))")
    ctx = ScanContext(root=tmp_path, file="tag.yaml")
    config_targets.check_text(text, ctx)  # composing only: the payload must not run here
    assert not (tmp_path / "modelgate-payload-ran").exists() and not Path("modelgate-payload-ran").exists()
    assert Category.DANGEROUS in {f.category for f in ctx.findings}
    directive = f"%TAG !p! tag:yaml.org,2002:python/\n---\nx: !p!object/apply:os.system [{PAYLOAD_COMMAND!r}]\n"
    ctx = ScanContext(root=tmp_path, file="tag2.yaml")
    config_targets.check_text(directive, ctx)
    assert Category.DANGEROUS in {f.category for f in ctx.findings}


def test_duplicate_json_keys_are_all_checked(tmp_path: Path) -> None:
    text = '{"_target_": "os.system", "_target_": "math.sqrt", "_args_": [4]}'
    ctx = ScanContext(root=tmp_path, file="c.json")
    assert config_targets.check_text(text, ctx)
    assert {f.category for f in ctx.findings} == {Category.DANGEROUS, Category.CODE}


def test_billion_laughs_yaml_is_linear(tmp_path: Path) -> None:
    lines = ["a0: &a0 [_target_]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    ctx = ScanContext(root=tmp_path, file="bomb.yaml")
    assert config_targets.check_text("\n".join(lines) + "\n", ctx)
    assert ctx.findings == []


def _nemo(path: Path, config: str) -> Path:
    with tarfile.open(path, "w:") as archive:
        for name, data in (("./model_config.yaml", config.encode()), ("./model_weights.ckpt", b"\x00" * 64)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_nemo_archive_member_reaches_the_config_check(tmp_path: Path) -> None:
    """The tar scanner dispatches members through the driver; check_text is called for text members."""
    from modelgate.scan import driver

    path = _nemo(tmp_path / "m.nemo", MALICIOUS_CONFIGS["os-system.yaml"])
    assert runs_payload(path, _vulnerable(NEMO))
    seen: list[str] = []

    def dispatch(data: Any, ctx: ScanContext) -> str:
        fmt = driver.dispatch(data, ctx)
        if fmt == "text" and config_targets.check_text(bytes(data).decode("utf-8"), ctx):
            seen.append(ctx.member or "")
        return fmt

    ctx = ScanContext(root=tmp_path, file="m.nemo", nested=dispatch)
    dispatch(path.read_bytes(), ctx)
    assert seen == ["./model_config.yaml"]
    assert any(f.category is Category.DANGEROUS and f.member == "./model_config.yaml" for f in ctx.findings)


# --------------------------------------------------------------------------- GGUF chat templates


def _gguf(template: str) -> bytes:
    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kvs = [
        string("general.architecture") + struct.pack("<I", 8) + string("llama"),
        string("tokenizer.chat_template") + struct.pack("<I", 8) + string(template),
    ]
    tensor = string("tok_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 3) + struct.pack("<IQ", 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs) + tensor
    header += b"\x00" * (-len(header) % 32)
    return header + b"\x00" * 48


RENDER_PLAIN = (
    "import sys, jinja2; jinja2.Environment().from_string(open(sys.argv[1]).read())"
    ".render(messages=[{'role': 'user', 'content': 'hi'}], add_generation_prompt=True, "
    "bos_token='<s>', eos_token='</s>')"
)
RENDER_SANDBOX = (
    "import sys, jinja2.sandbox as s; e = s.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True); "
    "e.globals['raise_exception'] = lambda m: None; e.from_string(open(sys.argv[1]).read())"
    ".render(messages=[{'role': 'user', 'content': 'hi'}], add_generation_prompt=True, "
    "bos_token='<s>', eos_token='</s>')"
)
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


@pytest.mark.parametrize("name", sorted(MALICIOUS_TEMPLATES))
def test_malicious_chat_templates_block(tmp_path: Path, name: str) -> None:
    template = MALICIOUS_TEMPLATES[name]
    source = tmp_path / "template.jinja"
    source.write_text(template)
    assert runs_payload(source, RENDER_PLAIN)
    (tmp_path / "model.gguf").write_bytes(_gguf(template))
    report = scan_path(tmp_path / "model.gguf")
    assert report.verdict == "unsafe"
    assert Category.DANGEROUS in _categories(report), [f.message for f in report.findings]


def _benign_templates() -> list[Path]:
    return sorted(TEMPLATES.glob("*.jinja"))


def test_benign_template_corpus_is_large() -> None:
    assert len(_benign_templates()) >= 30


@pytest.mark.parametrize("path", _benign_templates(), ids=lambda p: p.stem)
def test_real_chat_templates_pass(tmp_path: Path, path: Path) -> None:
    template = path.read_text()
    assert list(check_template(template)) == []
    (tmp_path / "model.gguf").write_bytes(_gguf(template))
    assert scan_path(tmp_path / "model.gguf").verdict == "safe"


@pytest.mark.parametrize("name", ["chatml", "llama-2", "llama-3", "zephyr", "deepseek-r1", "qwen2.5"])
def test_benign_templates_render_in_the_sandbox(name: str) -> None:
    assert loads_cleanly(TEMPLATES / f"{name}.jinja", RENDER_SANDBOX)


@pytest.mark.parametrize(
    ("template", "category"),
    [
        ("{{ x|attr('y') }}", Category.UNKNOWN),
        ("{{ x|pprint }}", Category.UNKNOWN),
        ("{{ x.read() }}", Category.UNKNOWN),
        ("{{ '{0.__class__}'.format(x) }}", Category.UNKNOWN),
        ("{{ self }}", Category.UNKNOWN),
        ("{{ request.application }}", Category.UNKNOWN),
        ("{{ config.items() }}", Category.UNKNOWN),
        ("{% include 'x' %}", Category.UNKNOWN),
        ("{% set k = 'a' ~ 'b' %}{{ x[k] }}", Category.UNKNOWN),
        ("{% for k in ['__cla' ~ 'ss__'] %}{{ x[k] }}{% endfor %}", Category.DANGEROUS),
        ("{{ x.gi_frame.f_globals }}", Category.DANGEROUS),
        ("{{ messages|map(attribute='__class__')|list }}", Category.DANGEROUS),
        ("{{ x[('_' * 2) ~ 'class' ~ ('_' * 2)] }}", Category.DANGEROUS),
        ("{% for m in messages %}{{ m['content'] ", Category.MALFORMED),
    ],
)
def test_template_constructs_outside_the_allowlist_block(template: str, category: Category) -> None:
    issues = list(check_template(template))
    assert category in {i.category for i in issues}
    assert all(i.category in BLOCKING for i in issues)


def test_gguf_template_check_never_renders(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(_gguf(MALICIOUS_TEMPLATES["lipsum-globals"]))
    scan_path(tmp_path / "model.gguf")
    assert not (tmp_path / "modelgate-payload-ran").exists() and not Path("modelgate-payload-ran").exists()


@pytest.mark.parametrize("cut", [9, 20, 40, 60, 100])
def test_truncated_gguf_with_template_fails_closed(tmp_path: Path, cut: int) -> None:
    data = _gguf(TEMPLATES.joinpath("chatml.jinja").read_text())
    (tmp_path / "model.gguf").write_bytes(data[:cut])
    assert scan_path(tmp_path / "model.gguf").verdict == "unsafe"


# --------------------------------------------------------------------------- TensorFlow SavedModel
# Graphs built by hand as TensorFlow 2 writes them (tests/test_scan_saved_model_live.py builds and
# runs the real ones): the serving function, and the save/restore functions the main graph calls
# with the checkpoint prefix placeholder that saver_def names.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _attr(key: str, value: bytes) -> bytes:
    """A NodeDef.attr map entry {1: key, 2: AttrValue}."""
    return _field(5, _field(1, key) + _field(2, value))


def _node(name: str, op: str, *inputs: str, attrs: bytes = b"") -> bytes:
    return _field(1, name) + _field(2, op) + b"".join(_field(3, i) for i in inputs) + attrs


def _const(name: str, *strings: str) -> bytes:
    """A string Const: AttrValue{8: TensorProto{1: DT_STRING, 8: string_val}}."""
    tensor = _varint(1 << 3) + _varint(7) + b"".join(_field(8, s) for s in strings)
    return _node(name, "Const", attrs=_attr("value", _field(8, tensor)))


def _call(name: str, function: str, *inputs: str, op: str = "StatefulPartitionedCall", attr: str = "f") -> bytes:
    """A node calling a library function through a func attribute (AttrValue{10: NameAttrList{1: name}})."""
    return _node(name, op, *inputs, attrs=_attr(attr, _field(10, _field(1, function))))


def _function(name: str, nodes: list[bytes], args: tuple[str, ...] = ()) -> bytes:
    signature = _field(1, name) + b"".join(_field(2, _field(1, a)) for a in args)
    return _field(1, signature) + b"".join(_field(3, n) for n in nodes)


def _objects(objects: list[bytes], bound: dict[str, list[int]]) -> bytes:
    """MetaGraphDef.object_graph_def: SavedObjects and each concrete function's bound inputs."""
    functions = b"".join(
        _field(2, _field(1, name) + _field(2, _field(2, b"".join(_varint(i) for i in ids))))
        for name, ids in bound.items()
    )
    return _field(7, b"".join(_field(1, o) for o in objects) + functions)


def _saved_model(
    nodes: list[bytes],
    functions: list[bytes] = (),  # type: ignore[assignment]
    *,
    assets: tuple[tuple[str, str], ...] = (),
    objects: bytes = b"",
) -> bytes:
    library = _field(2, b"".join(_field(1, f) for f in functions)) if functions else b""
    graph = b"".join(_field(1, n) for n in nodes) + library
    meta_info = _field(1, "") + _field(4, "serve") + _field(5, "2.15.0")
    saver_def = _field(3, _field(1, "saver_filename:0"))
    asset_defs = b"".join(_field(6, _field(1, _field(1, tensor)) + _field(2, name)) for tensor, name in assets)
    meta = _field(1, meta_info) + _field(2, graph) + saver_def + asset_defs + objects
    return b"\x08\x01" + _field(2, meta)


def _saver_nodes() -> list[bytes]:
    """A saver in the main graph itself (TensorFlow 1 style), fed the checkpoint prefix."""
    return [
        _node("saver_filename", "Placeholder"),
        _const("Const", "_temp/part"),
        _node("StringJoin", "StringJoin", "saver_filename", "Const"),
        _node("num_shards", "Const"),
        _node("ShardedFilename", "ShardedFilename", "StringJoin", "num_shards", "num_shards"),
        _node("SaveV2", "SaveV2", "ShardedFilename", "tensor_names", "shape_and_slices", "^NoOp"),
        _node("MergeV2Checkpoints", "MergeV2Checkpoints", "ShardedFilename:0", "saver_filename"),
        _node("RestoreV2", "RestoreV2", "saver_filename", "tensor_names", "shape_and_slices"),
        _node("NoOp", "NoOp"),
    ]


def _save_function(name: str = "__inference__traced_save_203", suffix: str = "_temp/part") -> bytes:
    """The save function TensorFlow 2 writes: prefix + '_temp/part' (or '.part' on s3), sharded, merged."""
    return _function(
        name,
        [
            _node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
            _const("Const", ".part"),
            _const("Const_1", suffix),
            _node("Select", "Select", "StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"),
            _node("StringJoin", "StringJoin", "file_prefix", "Select:output:0"),
            _node("Read/DisableCopyOnRead", "DisableCopyOnRead", "var"),
            _node("Read/ReadVariableOp", "ReadVariableOp", "var", "^Read/DisableCopyOnRead"),
            _node("num_shards", "Const"),
            _node("ShardedFilename/shard", "Const"),
            _node("ShardedFilename", "ShardedFilename", "StringJoin:output:0", "ShardedFilename/shard:output:0"),
            _node("SaveV2", "SaveV2", "ShardedFilename:filename:0", "names", "slices", "Read/ReadVariableOp:value:0"),
            _node("MergeV2Checkpoints/checkpoint_prefixes", "Pack", "ShardedFilename:filename:0", "^SaveV2"),
            _node(
                "MergeV2Checkpoints",
                "MergeV2Checkpoints",
                "MergeV2Checkpoints/checkpoint_prefixes:output:0",
                "file_prefix",
            ),
            _node("Identity", "Identity", "file_prefix", "^MergeV2Checkpoints"),
        ],
        ("file_prefix", "var"),
    )


def _serving() -> tuple[list[bytes], list[bytes]]:
    nodes = [
        _node("serving_default_x", "Placeholder"),
        _node("dense/kernel", "VarHandleOp"),
        _call("StatefulPartitionedCall", "__inference_serving_default_101", "serving_default_x", "dense/kernel"),
        _node("saver_filename", "Placeholder"),
        _call("StatefulPartitionedCall_1", "__inference__traced_save_203", "saver_filename", "dense/kernel"),
        _call("StatefulPartitionedCall_2", "__inference__traced_restore_202", "saver_filename", "dense/kernel"),
    ]
    body = [
        _node("MatMul/ReadVariableOp", "ReadVariableOp", "kernel"),
        _node("MatMul", "MatMul", "x", "MatMul/ReadVariableOp:value:0"),
        _node("BiasAdd", "BiasAdd", "MatMul:product:0", "MatMul/ReadVariableOp:value:0"),
        _node("Relu", "Relu", "BiasAdd:output:0"),
        _node("Identity", "Identity", "Relu:activations:0"),
    ]
    restore = [
        _node("RestoreV2", "RestoreV2", "file_prefix", "names", "slices"),
        _node("AssignVariableOp", "AssignVariableOp", "var", "RestoreV2:tensors:0"),
    ]
    functions = [
        _function("__inference_serving_default_101", body, ("x", "kernel")),
        _function("__inference__traced_restore_202", restore, ("file_prefix", "var")),
        _save_function(),
    ]
    return nodes, functions


def _benign_saved_model() -> bytes:
    nodes, functions = _serving()
    return _saved_model(nodes + _saver_nodes(), functions)


def test_saved_model_is_detected_as_saved_model_and_benign_passes(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(_benign_saved_model())
    report = scan_path(tmp_path)
    assert report.files[0].format == "saved-model"
    assert report.verdict == "safe", [f.message for f in report.findings]


def test_onnx_is_still_onnx(tmp_path: Path) -> None:
    from tests.scan_corpus import _onnx_model

    (tmp_path / "model.onnx").write_bytes(_onnx_model())
    report = scan_path(tmp_path / "model.onnx")
    assert report.files[0].format == "onnx" and report.verdict == "safe"


@pytest.mark.parametrize(
    ("extra_main", "extra_fn", "category"),
    [
        ([_node("w", "WriteFile", "fname", "contents"), _const("fname", "x")], [], Category.DANGEROUS),
        ([], [_node("r", "ReadFile", "path")], Category.DANGEROUS),
        ([], [_node("p", "PyFunc", "x")], Category.DANGEROUS),
        ([], [_node("p", "EagerPyFunc", "x")], Category.DANGEROUS),
        ([_node("m", "MatchingFiles", "pattern")], [], Category.DANGEROUS),
        ([], [_node("print", "PrintV2", "msg")], Category.DANGEROUS),
        ([_node("t", "InitializeTableFromTextFileV2", "table", "path")], [], Category.DANGEROUS),
        ([_const("fixed", "/tmp/x"), _node("s", "SaveV2", "fixed", "names", "slices")], [], Category.DANGEROUS),
        (
            [
                _const("a", "/tmp/"),
                _const("b", "x"),
                _node("j", "StringJoin", "a", "b"),
                _node("s", "SaveV2", "j:output:0", "n", "s"),
            ],
            [],
            Category.DANGEROUS,
        ),
        ([], [_node("c", "MyCustomOp", "x")], Category.UNKNOWN),
        ([_node("c", "Addons>Resampler", "x")], [], Category.UNKNOWN),
        ([_node("x", "XlaCallModule", "a")], [], Category.UNKNOWN),  # a StableHLO program the scanner does not read
        ([_node("w", "SummaryWriter")], [], Category.DANGEROUS),
    ],
)
def test_saved_model_ops_outside_the_allowlist_block(
    tmp_path: Path, extra_main: list[bytes], extra_fn: list[bytes], category: Category
) -> None:
    nodes, functions = _serving()
    functions = [*functions, _function("__inference_payload_9", extra_fn)] if extra_fn else functions
    (tmp_path / "saved_model.pb").write_bytes(_saved_model(nodes + _saver_nodes() + extra_main, functions))
    report = scan_path(tmp_path / "saved_model.pb")
    assert report.files[0].format == "saved-model"
    assert category in _categories(report), [f.message for f in report.findings]


def _path_op_in(function: str, op: str, position: int) -> bytes:
    """A function whose argument 'path' reaches ``op`` at input ``position``."""
    inputs = ["handle", "path"] if position == 1 else ["path", "names", "slices"]
    return _function(function, [_node("opens", op, *inputs)], ("path", "handle"))


# Ways a graph can hand a path op a path the loader does not choose (each must block), then the two
# ways TensorFlow 2 feeds an asset path (each must pass).
_ESCAPES: dict[str, tuple[list[bytes], list[bytes], bytes]] = {
    "checkpoint prefix + '/../'": (
        [_call("StatefulPartitionedCall_9", "__inference__traced_save_9", "saver_filename", "dense/kernel")],
        [_save_function("__inference__traced_save_9", "_temp/../../../../tmp/x")],
        b"",
    ),
    "join separator climbs": (
        [_const("part", "x"),
         _node("j", "StringJoin", "saver_filename", "part", attrs=_attr("separator", _field(2, "/../"))),
         _node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a suffix held in tensor_content": (  # TensorFlow decodes string tensors from tensor_content too
        [_node("c", "Const", attrs=_attr("value", _field(8, _varint(1 << 3) + _varint(7) + _field(4, "\x07/../../x")))),
         _node("j", "StringJoin", "saver_filename", "c"), _node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a suffix in a second tensor field": (  # protobuf merges the two: TensorFlow sees both strings
        [_node("c", "Const", attrs=_attr("value", _field(8, _varint(1 << 3) + _varint(7) + _field(8, "x"))
                                                   + _field(8, _field(8, "/../../x")))),
         _node("j", "StringJoin", "saver_filename", "c"), _node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "join with a caller's input": (
        [_node("j", "StringJoin", "saver_filename", "serving_default_x"), _node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a constant before the prefix": (
        [_const("tmp", "/tmp/"), _node("j", "StringJoin", "tmp", "saver_filename"),
         _node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "the caller of a signature chooses": (
        [_call("c", "__inference_evil_7", "serving_default_x", "h")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a constant passed into a call": (
        [_const("fixed", "/tmp/x"), _call("c", "__inference_evil_7", "fixed", "h")],
        [_path_op_in("__inference_evil_7", "RestoreV2", 0)],
        b"",
    ),
    "a constant passed into an If branch": (
        [_const("fixed", "/tmp/x"), _node("flag", "Const"),
         _call("c", "__inference_evil_7", "flag", "fixed", "h", op="If", attr="then_branch")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a loop variable": (
        [_call("c", "__inference_evil_7", "saver_filename", "h", op="While", attr="body")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a function no one calls": ([], [_path_op_in("__inference_evil_7", "SaveV2", 0)], b""),
    "an argument another op passes (BatchFunction)": (
        [_call("d", "__inference_evil_7", "asset_path", op="BatchFunction")],
        [_path_op_in("__inference_evil_7", "InitializeTableFromTextFileV2", 1)],
        b"",
    ),
    "the checkpoint prefix into a table": (
        [_node("t", "InitializeTableFromTextFileV2", "table", "saver_filename")],
        [],
        b"",
    ),
    "an asset path into the saver": ([_node("s", "RestoreV2", "asset_path", "n", "s")], [], b""),
    "an asset path with a suffix": (
        [_const("up", "/../../etc/passwd"), _node("j", "StringJoin", "asset_path", "up"),
         _node("t", "InitializeTableFromTextFileV2", "table", "j")],
        [],
        b"",
    ),
    "a variable the graph sets to a constant": (
        [_node("v", "VarHandleOp"), _const("fixed", "/etc/passwd"), _node("a", "AssignVariableOp", "v", "fixed"),
         _node("r", "ReadVariableOp", "v"), _node("t", "InitializeTableFromTextFileV2", "table", "r")],
        [],
        b"",
    ),
    "a variable the checkpoint restores": (
        [_node("v", "VarHandleOp"), _node("a", "AssignVariableOp", "v", "asset_path"),
         _call("restore", "__inference__traced_restore_202", "saver_filename", "v"),
         _node("r", "ReadVariableOp", "v"), _node("t", "InitializeTableFromTextFileV2", "table", "r")],
        [],
        b"",
    ),
    "a captured constant": (
        [_const("captured", "/etc/passwd")],
        [_path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)],
        _objects([_field(9, _field(1, "captured")), _field(10, b"")], {"__inference__initializer_30": [0, 1]}),
    ),
    "a signature argument of a top-level function": (
        [],
        [_path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)],
        _objects([_field(10, b"")], {"__inference__initializer_30": [0]}),
    ),
}  # fmt: skip


@pytest.mark.parametrize("how", list(_ESCAPES))
def test_saved_model_path_ops_block_unless_the_loader_feeds_the_path(tmp_path: Path, how: str) -> None:
    extra_main, extra_fn, objects = _ESCAPES[how]
    nodes, functions = _serving()
    nodes = [*nodes, _node("asset_path", "Placeholder"), *extra_main]
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("red\ngreen\n")
    graph = _saved_model(nodes, [*functions, *extra_fn], assets=(("asset_path:0", "vocab.txt"),), objects=objects)
    (tmp_path / "saved_model.pb").write_bytes(graph)
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert {f.rule_id for f in report.findings} == {"saved-model.dangerous-op"}, [f.message for f in report.findings]


def _asset_table(filename: str = "vocab.txt") -> bytes:
    """A text-file table fed its asset path both ways TensorFlow 2 writes: the main graph keeps the
    asset placeholder in a variable for TensorFlow 1 loaders; the object graph binds the asset."""
    nodes, functions = _serving()
    nodes += [
        _node("asset_path_initializer", "Placeholder"),
        _node("Variable", "VarHandleOp"),
        _node("Variable/Assign", "AssignVariableOp", "Variable", "asset_path_initializer"),
        _node("Variable/IsInitialized", "VarIsInitializedOp", "Variable"),
        _node("ReadVariableOp", "ReadVariableOp", "Variable", "^Variable/Assign"),
        _node("hash_table", "HashTableV2"),
        _call("StatefulPartitionedCall_3", "__inference__initializer_30", "ReadVariableOp", "hash_table"),
    ]
    init = _path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)
    objects = _objects([_field(5, b""), _field(10, b"")], {"__inference__initializer_30": [0, 1]})
    return _saved_model(nodes, [*functions, init], assets=(("asset_path_initializer:0", filename),), objects=objects)


def test_an_asset_fed_text_table_passes(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("red\ngreen\n")
    (tmp_path / "saved_model.pb").write_bytes(_asset_table())
    report = scan_path(tmp_path)
    assert report.verdict == "safe", [f.message for f in report.findings]
    (tmp_path / "assets" / "vocab.txt").unlink()  # the file it names must be there (and scanned)
    assert [f.rule_id for f in scan_path(tmp_path).findings] == ["saved-model.asset-missing"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../../../etc/passwd", "a/../../x", "C:\\x", "C:/x", ""])
def test_asset_names_that_leave_the_assets_folder_block(tmp_path: Path, name: str) -> None:
    # TensorFlow joins the name to <export>/assets: an absolute name or '..' reads any file
    # (test_scan_saved_model_live proves '/proc/self/cwd/...' live).
    (tmp_path / "saved_model.pb").write_bytes(_asset_table(name))
    report = scan_path(tmp_path / "saved_model.pb")
    assert "saved-model.asset-escape" in {f.rule_id for f in report.findings}, [f.message for f in report.findings]


@pytest.mark.parametrize("cut", [10, 25, 60, 120, -3])
def test_truncated_saved_model_fails_closed(tmp_path: Path, cut: int) -> None:
    data = _benign_saved_model()
    (tmp_path / "saved_model.pb").write_bytes(data[:cut])
    report = scan_path(tmp_path / "saved_model.pb")
    assert report.verdict == "unsafe", (report.files[0].format, [f.message for f in report.findings])


def test_text_saved_model_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pbtxt").write_text("saved_model_schema_version: 1\nmeta_graphs {\n  graph_def {\n  }\n}\n")
    assert scan_path(tmp_path / "saved_model.pbtxt").verdict == "unsafe"


def _keras_metadata(objects: list[dict[str, Any]]) -> bytes:
    nodes = b""
    for i, obj in enumerate(objects):
        node = _varint(2 << 3) + _varint(i) + _field(3, f"root.layer-{i}") + _field(4, "_tf_keras_layer")
        nodes += _field(1, node + _field(5, json.dumps(obj)))
    return nodes


def test_keras_metadata_lambda_and_custom_layers_block(tmp_path: Path) -> None:
    dense = {"class_name": "Dense", "name": "d", "config": {"units": 2}}
    lam = {"class_name": "Lambda", "name": "l", "config": {"function": "abc"}}
    custom = {"class_name": "MyLayer", "name": "c", "config": {}}
    (tmp_path / "keras_metadata.pb").write_bytes(_keras_metadata([dense]))
    assert scan_path(tmp_path / "keras_metadata.pb").verdict == "safe"
    (tmp_path / "keras_metadata.pb").write_bytes(_keras_metadata([dense, lam, custom]))
    report = scan_path(tmp_path / "keras_metadata.pb")
    assert {"keras.lambda", "keras.custom-object"} <= {f.rule_id for f in report.findings}
