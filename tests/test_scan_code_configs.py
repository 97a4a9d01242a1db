"""Content that names code: Keras config objects, Hydra ``_target_``, GGUF chat templates, SavedModel ops.

Every malicious sample is first proven to run its payload with the real loader in a child
process (tests/helpers/live.py); every benign neighbour is loaded by the real loader and must scan
safe. The samples are built by tests/helpers/code_config_samples.py; the SavedModel graphs, built by
hand to reach every path-flow case, by tests/helpers/saved_models.py; the real ones, built, loaded
and run by TensorFlow 2.21, are in tests/test_scan_saved_model_live.py.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from modelgate.scan import config_targets, scan_path
from modelgate.scan.base import ScanContext
from modelgate.scan.findings import BLOCKING, Category
from modelgate.scan.jinja_template import check_template
from tests.helpers.code_config_samples import (
    MALICIOUS_CONFIGS,
    MALICIOUS_TEMPLATES,
    call_layer,
    functional,
    keras_file,
    layer,
    nemo,
    torch_module_wrapper,
)
from tests.helpers.live import PAYLOAD_COMMAND, loads_cleanly, missing_loader, runs_payload
from tests.helpers.paths import LOADERS_DIR
from tests.helpers.saved_models import (
    benign_saved_model,
    call_node,
    const_node,
    field,
    graph_function,
    node,
    node_attr,
    object_graph,
    save_function,
    saved_model,
    saver_nodes,
    serving,
    varint,
)

TEMPLATES = Path(__file__).parent / "chat_templates"


def _categories(report: Any) -> set[Category]:
    return {f.category for f in report.findings}


# --------------------------------------------------------------------------- Keras 3 configs

# The real loaders, each at the version that runs the payload (tests/helpers/paths.py: LOADERS_DIR);
# a folder named by the environment variable wins.
_KERAS38 = os.environ.get("MODELGATE_KERAS_3_8", str(LOADERS_DIR / "keras38"))
_KERAS_LOAD = f"import os, sys; sys.path.insert(0, {_KERAS38!r}); os.environ['KERAS_BACKEND'] = 'torch'; import keras; "
KERAS_SAFE = _KERAS_LOAD + "keras.saving.load_model(sys.argv[1])"
KERAS_UNSAFE = _KERAS_LOAD + "keras.saving.load_model(sys.argv[1], safe_mode=False)"


def test_keras_get_file_is_dangerous(tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"x")
    kwargs = {
        "fname": "modelgate-payload-ran",
        "origin": source.resolve().as_uri(),
        "cache_dir": ".",
        "cache_subdir": ".",
    }
    path = keras_file(tmp_path / "get_file.keras", functional([call_layer("keras.utils", "get_file", kwargs)], "call"))
    assert runs_payload(path, KERAS_SAFE)  # keras 3.8 calls keras.utils.get_file even in safe mode
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.rule_id == "keras.dangerous-object" and "keras.utils.get_file" in f.message for f in report.findings)


def test_keras_enable_unsafe_and_lambda_block(tmp_path: Path) -> None:
    """A 'layer' that calls keras.config.enable_unsafe_deserialization (CVE-2025-1550 shape) next to a Lambda.

    Keras builds every layer before it calls any, so the unlock alone does not reach the Lambda
    here; the payload is proven with safe_mode=False (what a consumer that trusts the file does)."""
    from tests.helpers.fail_closed_samples import keras_unlock_and_lambda

    path = keras_file(tmp_path / "unlock.keras", keras_unlock_and_lambda(PAYLOAD_COMMAND))
    assert runs_payload(path, KERAS_UNSAFE)
    report = scan_path(path)
    rules = {f.rule_id for f in report.findings}
    assert {"keras.dangerous-object", "keras.lambda"} <= rules
    assert report.verdict == "unsafe"


def test_keras_torch_module_wrapper_pickle_is_dangerous(tmp_path: Path) -> None:
    """keras >= 3.9 torch.load(weights_only=False)s the base64 blob under safe_mode=False; the pinned 3.8
    torch.load()s raw bytes, which torch >= 2.6 reads weights-only: the proof needs a newer keras folder."""
    newer = os.environ.get("MODELGATE_KERAS_3_9_PLUS", str(LOADERS_DIR / "keras315"))
    if not newer or not Path(newer, "keras").is_dir():
        missing_loader("set MODELGATE_KERAS_3_9_PLUS to a keras>=3.9 folder to prove the payload runs")
    path = keras_file(tmp_path / "b64.keras", functional([torch_module_wrapper(base64_blob=True)], "wrapped"))
    assert runs_payload(
        path,
        f"import sys; sys.path.insert(0, {newer!r}); "
        + KERAS_UNSAFE.replace(f"sys.path.insert(0, {_KERAS38!r}); ", ""),
    )
    legacy = keras_file(tmp_path / "raw.keras", functional([torch_module_wrapper()], "wrapped"))
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
    path = keras_file(tmp_path / "m.keras", functional([call_layer(module, name, {})], "call"))
    report = scan_path(path)
    assert category in _categories(report)
    assert report.verdict == "unsafe"


def test_keras_custom_registered_name_and_function_names(tmp_path: Path) -> None:
    dense = layer("keras.layers", "Dense", {"units": 2, "name": "d"}, "d", [])
    dense["registered_name"] = "MyPkg>Dense"
    evil_fn = {"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "function"}
    odd_fn = {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}
    act = layer("keras.layers", "Activation", {"activation": evil_fn, "name": "a"}, "a", [])
    act2 = layer("keras.layers", "Activation", {"activation": odd_fn, "name": "b"}, "b", [])
    report = scan_path(keras_file(tmp_path / "m.keras", functional([dense, act, act2], "d")))
    messages = " ".join(f.message for f in report.findings)
    assert "MyPkg>Dense" in messages and "keras.utils.get_file" in messages and "builtins.exec" in messages


def test_keras_vocabulary_file_is_dangerous(tmp_path: Path) -> None:
    lookup = layer("keras.layers", "StringLookup", {"vocabulary": "/etc/passwd", "name": "s"}, "s", [])
    report = scan_path(keras_file(tmp_path / "m.keras", functional([lookup], "s")))
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
_OLD_HYDRA = os.environ.get("MODELGATE_VULNERABLE_HYDRA", str(LOADERS_DIR / "hydra132"))


def _vulnerable(loader: str) -> str:
    if not _OLD_HYDRA or not Path(_OLD_HYDRA, "hydra").is_dir():
        missing_loader("set MODELGATE_VULNERABLE_HYDRA to a hydra-core<=1.3.2 folder to prove the payload runs")
    return f"import sys; sys.path.insert(0, {_OLD_HYDRA!r}); " + loader


NEMO = (
    "import sys, tarfile, hydra.utils, omegaconf; t = tarfile.open(sys.argv[1]); "
    "m = [n for n in t.getnames() if n.endswith('model_config.yaml')][0]; "
    "hydra.utils.instantiate(omegaconf.OmegaConf.create(t.extractfile(m).read().decode()))"
)


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


def test_nemo_archive_member_reaches_the_config_check(tmp_path: Path) -> None:
    """The tar scanner dispatches members through the driver; check_text is called for text members."""
    from modelgate.scan import driver

    path = nemo(tmp_path / "m.nemo", MALICIOUS_CONFIGS["os-system.yaml"])
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
# Graphs built by hand as TensorFlow 2 writes them (tests/helpers/saved_models.py; the real ones are
# built and run by tests/test_scan_saved_model_live.py): the serving function, and the save/restore
# functions the main graph calls with the checkpoint prefix placeholder that saver_def names.


def test_saved_model_is_detected_as_saved_model_and_benign_passes(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(benign_saved_model())
    report = scan_path(tmp_path)
    assert report.files[0].format == "saved-model"
    assert report.verdict == "safe", [f.message for f in report.findings]


def test_onnx_is_still_onnx(tmp_path: Path) -> None:
    from tests.helpers.scan_corpus import onnx_model

    (tmp_path / "model.onnx").write_bytes(onnx_model())
    report = scan_path(tmp_path / "model.onnx")
    assert report.files[0].format == "onnx" and report.verdict == "safe"


@pytest.mark.parametrize(
    ("extra_main", "extra_fn", "category"),
    [
        ([node("w", "WriteFile", "fname", "contents"), const_node("fname", "x")], [], Category.DANGEROUS),
        ([], [node("r", "ReadFile", "path")], Category.DANGEROUS),
        ([], [node("p", "PyFunc", "x")], Category.DANGEROUS),
        ([], [node("p", "EagerPyFunc", "x")], Category.DANGEROUS),
        ([node("m", "MatchingFiles", "pattern")], [], Category.DANGEROUS),
        ([], [node("print", "PrintV2", "msg")], Category.DANGEROUS),
        ([node("t", "InitializeTableFromTextFileV2", "table", "path")], [], Category.DANGEROUS),
        ([const_node("fixed", "/tmp/x"), node("s", "SaveV2", "fixed", "names", "slices")], [], Category.DANGEROUS),
        (
            [
                const_node("a", "/tmp/"),
                const_node("b", "x"),
                node("j", "StringJoin", "a", "b"),
                node("s", "SaveV2", "j:output:0", "n", "s"),
            ],
            [],
            Category.DANGEROUS,
        ),
        ([], [node("c", "MyCustomOp", "x")], Category.UNKNOWN),
        ([node("c", "Addons>Resampler", "x")], [], Category.UNKNOWN),
        ([node("x", "XlaCallModule", "a")], [], Category.UNKNOWN),  # a StableHLO program the scanner does not read
        ([node("w", "SummaryWriter")], [], Category.DANGEROUS),
    ],
)
def test_saved_model_ops_outside_the_allowlist_block(
    tmp_path: Path, extra_main: list[bytes], extra_fn: list[bytes], category: Category
) -> None:
    nodes, functions = serving()
    functions = [*functions, graph_function("__inference_payload_9", extra_fn)] if extra_fn else functions
    (tmp_path / "saved_model.pb").write_bytes(saved_model(nodes + saver_nodes() + extra_main, functions))
    report = scan_path(tmp_path / "saved_model.pb")
    assert report.files[0].format == "saved-model"
    assert category in _categories(report), [f.message for f in report.findings]


def _path_op_in(function: str, op: str, position: int) -> bytes:
    """A function whose argument 'path' reaches ``op`` at input ``position``."""
    inputs = ["handle", "path"] if position == 1 else ["path", "names", "slices"]
    return graph_function(function, [node("opens", op, *inputs)], ("path", "handle"))


# Ways a graph can hand a path op a path the loader does not choose (each must block), then the two
# ways TensorFlow 2 feeds an asset path (each must pass).
_ESCAPES: dict[str, tuple[list[bytes], list[bytes], bytes]] = {
    "checkpoint prefix + '/../'": (
        [call_node("StatefulPartitionedCall_9", "__inference__traced_save_9", "saver_filename", "dense/kernel")],
        [save_function("__inference__traced_save_9", "_temp/../../../../tmp/x")],
        b"",
    ),
    "join separator climbs": (
        [const_node("part", "x"),
         node("j", "StringJoin", "saver_filename", "part", attrs=node_attr("separator", field(2, "/../"))),
         node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a suffix held in tensor_content": (  # TensorFlow decodes string tensors from tensor_content too
        [node("c", "Const", attrs=node_attr("value", field(8, varint(1 << 3) + varint(7) + field(4, "\x07/../../x")))),
         node("j", "StringJoin", "saver_filename", "c"), node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a suffix in a second tensor field": (  # protobuf merges the two: TensorFlow sees both strings
        [node("c", "Const", attrs=node_attr("value", field(8, varint(1 << 3) + varint(7) + field(8, "x"))
                                                   + field(8, field(8, "/../../x")))),
         node("j", "StringJoin", "saver_filename", "c"), node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "join with a caller's input": (
        [node("j", "StringJoin", "saver_filename", "serving_default_x"), node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "a constant before the prefix": (
        [const_node("tmp", "/tmp/"), node("j", "StringJoin", "tmp", "saver_filename"),
         node("s", "SaveV2", "j", "n", "s")],
        [],
        b"",
    ),
    "the caller of a signature chooses": (
        [call_node("c", "__inference_evil_7", "serving_default_x", "h")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a constant passed into a call": (
        [const_node("fixed", "/tmp/x"), call_node("c", "__inference_evil_7", "fixed", "h")],
        [_path_op_in("__inference_evil_7", "RestoreV2", 0)],
        b"",
    ),
    "a constant passed into an If branch": (
        [const_node("fixed", "/tmp/x"), node("flag", "Const"),
         call_node("c", "__inference_evil_7", "flag", "fixed", "h", op="If", attr="then_branch")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a loop variable": (
        [call_node("c", "__inference_evil_7", "saver_filename", "h", op="While", attr="body")],
        [_path_op_in("__inference_evil_7", "SaveV2", 0)],
        b"",
    ),
    "a function no one calls": ([], [_path_op_in("__inference_evil_7", "SaveV2", 0)], b""),
    "an argument another op passes (BatchFunction)": (
        [call_node("d", "__inference_evil_7", "asset_path", op="BatchFunction")],
        [_path_op_in("__inference_evil_7", "InitializeTableFromTextFileV2", 1)],
        b"",
    ),
    "the checkpoint prefix into a table": (
        [node("t", "InitializeTableFromTextFileV2", "table", "saver_filename")],
        [],
        b"",
    ),
    "an asset path into the saver": ([node("s", "RestoreV2", "asset_path", "n", "s")], [], b""),
    "an asset path with a suffix": (
        [const_node("up", "/../../etc/passwd"), node("j", "StringJoin", "asset_path", "up"),
         node("t", "InitializeTableFromTextFileV2", "table", "j")],
        [],
        b"",
    ),
    "a variable the graph sets to a constant": (
        [node("v", "VarHandleOp"), const_node("fixed", "/etc/passwd"), node("a", "AssignVariableOp", "v", "fixed"),
         node("r", "ReadVariableOp", "v"), node("t", "InitializeTableFromTextFileV2", "table", "r")],
        [],
        b"",
    ),
    "a variable the checkpoint restores": (
        [node("v", "VarHandleOp"), node("a", "AssignVariableOp", "v", "asset_path"),
         call_node("restore", "__inference__traced_restore_202", "saver_filename", "v"),
         node("r", "ReadVariableOp", "v"), node("t", "InitializeTableFromTextFileV2", "table", "r")],
        [],
        b"",
    ),
    "a captured constant": (
        [const_node("captured", "/etc/passwd")],
        [_path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)],
        object_graph([field(9, field(1, "captured")), field(10, b"")], {"__inference__initializer_30": [0, 1]}),
    ),
    "a signature argument of a top-level function": (
        [],
        [_path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)],
        object_graph([field(10, b"")], {"__inference__initializer_30": [0]}),
    ),
}  # fmt: skip


@pytest.mark.parametrize("how", list(_ESCAPES))
def test_saved_model_path_ops_block_unless_the_loader_feeds_the_path(tmp_path: Path, how: str) -> None:
    extra_main, extra_fn, objects = _ESCAPES[how]
    nodes, functions = serving()
    nodes = [*nodes, node("asset_path", "Placeholder"), *extra_main]
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("red\ngreen\n")
    graph = saved_model(nodes, [*functions, *extra_fn], assets=(("asset_path:0", "vocab.txt"),), objects=objects)
    (tmp_path / "saved_model.pb").write_bytes(graph)
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert {f.rule_id for f in report.findings} == {"saved-model.dangerous-op"}, [f.message for f in report.findings]


def _asset_table(filename: str = "vocab.txt") -> bytes:
    """A text-file table fed its asset path both ways TensorFlow 2 writes: the main graph keeps the
    asset placeholder in a variable for TensorFlow 1 loaders; the object graph binds the asset."""
    nodes, functions = serving()
    nodes += [
        node("asset_path_initializer", "Placeholder"),
        node("Variable", "VarHandleOp"),
        node("Variable/Assign", "AssignVariableOp", "Variable", "asset_path_initializer"),
        node("Variable/IsInitialized", "VarIsInitializedOp", "Variable"),
        node("ReadVariableOp", "ReadVariableOp", "Variable", "^Variable/Assign"),
        node("hash_table", "HashTableV2"),
        call_node("StatefulPartitionedCall_3", "__inference__initializer_30", "ReadVariableOp", "hash_table"),
    ]
    init = _path_op_in("__inference__initializer_30", "InitializeTableFromTextFileV2", 1)
    objects = object_graph([field(5, b""), field(10, b"")], {"__inference__initializer_30": [0, 1]})
    return saved_model(nodes, [*functions, init], assets=(("asset_path_initializer:0", filename),), objects=objects)


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
    data = benign_saved_model()
    (tmp_path / "saved_model.pb").write_bytes(data[:cut])
    report = scan_path(tmp_path / "saved_model.pb")
    assert report.verdict == "unsafe", (report.files[0].format, [f.message for f in report.findings])


def test_text_saved_model_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pbtxt").write_text("saved_model_schema_version: 1\nmeta_graphs {\n  graph_def {\n  }\n}\n")
    assert scan_path(tmp_path / "saved_model.pbtxt").verdict == "unsafe"


def _keras_metadata(objects: list[dict[str, Any]]) -> bytes:
    nodes = b""
    for i, obj in enumerate(objects):
        proto = varint(2 << 3) + varint(i) + field(3, f"root.layer-{i}") + field(4, "_tf_keras_layer")
        nodes += field(1, proto + field(5, json.dumps(obj)))
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
