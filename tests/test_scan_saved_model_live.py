"""Real SavedModels and checkpoints, written, loaded and run by TensorFlow 2.21, then scanned.

TensorFlow lives beside the venv (.venv-loaders/tf221, tests/loaders/tensorflow-2.21.txt) and is only
ever imported in child processes: one child builds every sample (tf.saved_model.save, keras
``Model.export``, tf.train.Checkpoint), a second loads each one in a fresh temp working directory
and calls every signature. A malicious sample counts only if that call created the marker file
(tests/helpers/live.MARKER), directly or by handing back a file it chose to read; every benign neighbour
must load and run cleanly, and all must scan as expected. Without TensorFlow these tests skip for
a developer and fail in CI.

The tensor-bundle tests also run without TensorFlow: a small pure-Python bundle writer (checked
against TensorFlow reading it back, when it is there) makes the broken and hostile indexes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelgate.scan import scan_path
from modelgate.scan.findings import BLOCKING, ScanReport
from modelgate.scan.formats import tf_bundle
from tests.helpers.live import MARKER, missing_loader
from tests.helpers.paths import LOADERS_DIR
from tests.helpers.saved_models import (
    TENSORS,
    TF_NAMES,
    benign_saved_model,
    bundle_entries,
    bundle_entry,
    bundle_index,
    field,
    varint_field,
    write_bundle,
)

TF221 = Path(os.environ.get("MODELGATE_TF_2_21", str(LOADERS_DIR / "tf221")))
SECRET = "modelgate-secret"  # a file the proof harness puts in each working dir; a model reading it is caught

# Builds every sample into sys.argv[1]. Payloads only touch the marker (or read SECRET) in the cwd.
BUILD = r'''
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf

OUT, M, S = sys.argv[1], sys.argv[2], sys.argv[3]


def save(name, module, signatures=None, options=None):
    tf.saved_model.save(module, os.path.join(OUT, name), signatures=signatures, options=options)


def payload(name, fn):
    """A module whose serving signature (no inputs) runs ``fn``."""
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[])
    save(name, module, {"serving_default": module.f})


# ------------------------------------------------------------------ malicious
def write_file():
    tf.io.write_file(M, "x")
    return tf.constant(1)


def print_file():
    tf.print("x", output_stream="file://" + M)
    return tf.constant(1)


def text_table(filename):
    table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64)
    init = tf.raw_ops.InitializeTableFromTextFileV2(table_handle=table, filename=filename, key_index=-2, value_index=-1)
    with tf.control_dependencies([init]):
        return tf.raw_ops.LookupTableExportV2(table_handle=table, Tkeys=tf.string, Tvalues=tf.int64)[0]


def save_v2(prefix):
    saved = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["x"], shape_and_slices=[""], tensors=[tf.constant(1.0)])
    with tf.control_dependencies([saved]):  # SaveV2 is not among the ops a tf.function orders by itself
        return tf.constant(1)


def summary():
    writer = tf.raw_ops.SummaryWriter()
    tf.raw_ops.CreateSummaryFileWriter(writer=writer, logdir=M, max_queue=1, flush_millis=1, filename_suffix=".x")
    tf.raw_ops.WriteScalarSummary(writer=writer, step=tf.constant(1, tf.int64), tag="x", value=tf.constant(1.0))
    tf.raw_ops.FlushSummaryWriter(writer=writer)
    return tf.constant(1)


@tf.function
def hidden_write():
    return write_file()


def nested_cond():
    flag = tf.random.uniform([]) >= 0.0  # always true, but not a constant the tracer folds away
    return tf.cond(flag, hidden_write, lambda: tf.constant(0))


def while_print():
    def body(i):
        tf.print(i, output_stream="file://" + M)
        return [i + 1]

    return tf.while_loop(lambda i: i < 2, body, [tf.constant(0)])[0]


save_to = tf.function(save_v2, input_signature=[tf.TensorSpec([], tf.string)])

payload("write_file", write_file)
payload("print_file", print_file)
payload("read_file", lambda: tf.io.read_file(S))
payload("matching_files", lambda: tf.io.matching_files("*"))
payload("table_from_file", lambda: text_table(S))
captured = tf.constant(S)  # saved as a SavedConstant, which the loader binds to the function's argument
payload("table_from_captured_constant", lambda: text_table(captured))
payload("save_v2", lambda: save_v2(M + "/ckpt"))
payload("saver_via_call", lambda: save_to(tf.constant(M + "/ckpt")))
concat = lambda a, b: a + b
payload("text_line_dataset", lambda: tf.data.TextLineDataset(S).reduce(tf.constant(""), concat))
payload("tfrecord_dataset", lambda: tf.data.TFRecordDataset(S + ".tfrecord").reduce(tf.constant(""), concat))
payload("nested_cond", nested_cond)
payload("while_print", while_print)
payload("summary_writer", summary)


class VarPath(tf.Module):
    def __init__(self):
        self.path = tf.Variable(S)  # the checkpoint chooses the file

    @tf.function(input_signature=[])
    def f(self):
        return text_table(self.path.read_value())


module = VarPath()
save("table_path_in_variable", module, {"serving_default": module.f})


# ------------------------------------------------------------------ benign
vocab = os.path.join(OUT, "vocab.txt")
with open(vocab, "w") as handle:
    handle.write("red\ngreen\nblue\n")


class Table(tf.Module):
    def __init__(self, initializer):
        self.table = tf.lookup.StaticHashTable(initializer, -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, words):
        return self.table.lookup(words)

    @tf.function(input_signature=[])
    def keys(self):
        return self.table.export()[0]


def text_file_init(path):
    whole, number = tf.lookup.TextFileIndex.WHOLE_LINE, tf.lookup.TextFileIndex.LINE_NUMBER
    return tf.lookup.TextFileInitializer(path, tf.string, whole, tf.int64, number)


for name in ("vocab_asset", "asset_escape"):  # asset_escape's asset name is rewritten below
    module = Table(text_file_init(tf.saved_model.Asset(vocab)))
    save(name, module, {"serving_default": module.__call__, "keys": module.keys})
module = Table(tf.lookup.KeyValueTensorInitializer(["red", "green", "blue"], tf.constant([0, 1, 2], tf.int64)))
save("static_table", module, module.__call__)


class MLP(tf.Module):
    def __init__(self, n_in=4, hidden=8):
        self.w1 = tf.Variable(tf.random.normal([n_in, hidden]))
        self.b1 = tf.Variable(tf.zeros([hidden]))
        self.w2 = tf.Variable(tf.random.normal([hidden, 2]))
        self.__call__ = tf.function(self.forward, input_signature=[tf.TensorSpec([None, n_in], tf.float32)])

    def forward(self, x):
        return tf.nn.softmax(tf.nn.relu(x @ self.w1 + self.b1) @ self.w2)


mlp = MLP()
save("mlp", mlp, mlp.__call__)
tf.train.Checkpoint(model=mlp).write(os.path.join(OUT, "checkpoint", "ckpt"))
big = MLP(64, 256)
policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=40_000)
save("sharded", big, big.__call__, tf.saved_model.SaveOptions(experimental_sharding_callback=policy))


class Control(tf.Module):
    def __init__(self):
        self.steps = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        y = tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: -x)
        _, y = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v + 1.0), [tf.constant(0), y])
        self.steps.assign_add(1)
        return y


module = Control()
save("control_flow", module, module.__call__)


class Multi(tf.Module):
    def __init__(self):
        self.scale = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def predict(self, x):
        return {"scores": x * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def classify(self, ids):
        return {"classes": tf.math.floormod(ids, 3), "text": tf.strings.as_string(ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def preprocess(self, text):
        words = tf.strings.split(tf.strings.lower(tf.strings.regex_replace(text, "[^a-z ]", "")))
        return {"buckets": tf.strings.to_hash_bucket_fast(words, 100).to_tensor(-1)}


module = Multi()
save("multi_signature", module, {"serving_default": module.predict, "classify": module.classify,
                                 "preprocess": module.preprocess})


class Dtypes(tf.Module):
    def __init__(self):
        self.half = tf.Variable(tf.ones([3], tf.float16))
        self.bf = tf.Variable(tf.ones([3], tf.bfloat16))
        self.i8 = tf.Variable(tf.ones([3], tf.int8))
        self.i64 = tf.Variable(tf.ones([2, 2], tf.int64))
        self.flag = tf.Variable(True)
        self.label = tf.Variable(["a", "bc", ""])
        self.scalar = tf.Variable(2.5, dtype=tf.float64)

    @tf.function(input_signature=[])
    def __call__(self):
        return tf.cast(self.half, tf.float32) + tf.cast(self.bf, tf.float32) + tf.cast(self.i8, tf.float32)


module = Dtypes()
save("dtypes", module, module.__call__)

iterator = iter(tf.data.Dataset.range(5))
next(iterator)
tf.train.Checkpoint(it=iterator).write(os.path.join(OUT, "iterator_checkpoint", "ckpt"))

import keras

inputs = keras.Input((16, 16, 3))
x = keras.layers.Rescaling(1 / 255.0)(inputs)
x = keras.layers.Conv2D(8, 3, padding="same")(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU()(x)
x = keras.layers.MaxPooling2D()(x)
x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
x = keras.layers.AveragePooling2D(2)(x)
x = keras.layers.GlobalAveragePooling2D()(x)
x = keras.layers.Dropout(0.1)(x)
cnn = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
cnn.export(os.path.join(OUT, "keras_cnn"), verbose=False)
rnn = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True), keras.layers.GRU(4),
                        keras.layers.LayerNormalization(), keras.layers.Dense(1)])
rnn.export(os.path.join(OUT, "keras_rnn"), verbose=False)
text = keras.Sequential([keras.Input((3,), dtype="string"), keras.layers.StringLookup(vocabulary=["red", "green"]),
                         keras.layers.Embedding(5, 4), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
text.export(os.path.join(OUT, "keras_text"), verbose=False)
att = keras.Input((6, 8))
y = keras.layers.Add()([att, keras.layers.MultiHeadAttention(2, 4)(att, att)])
attention = keras.Model(att, keras.layers.Dense(1, activation="gelu")(y))
attention.export(os.path.join(OUT, "keras_attention"), verbose=False)

L = keras.layers
image = keras.Input((32, 32, 3))
x = L.Resizing(16, 16)(image)
x = L.SeparableConv2D(4, 3, padding="same")(x)
x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
x = L.UpSampling2D()(x)
x = L.ZeroPadding2D()(x)
x = L.Cropping2D(1)(x)
x = L.GroupNormalization(2)(x)
x = L.Conv2D(4, 3, dilation_rate=2, activation="swish")(x)
x = L.GlobalMaxPooling2D()(x)
x = L.PReLU()(L.LeakyReLU()(L.Dense(4, activation="selu")(x)))
keras.Model(image, L.Softmax()(x)).export(os.path.join(OUT, "keras_vision"), verbose=False)
seq = keras.Input((10, 4))
y = L.Conv1D(4, 3, padding="causal")(seq)
y = L.Bidirectional(L.LSTM(4, return_sequences=True))(y)
y = L.MaxPooling1D()(L.SimpleRNN(4, return_sequences=True)(y))
sequence = keras.Model(seq, L.Dense(2, activation="tanh")(L.Flatten()(y)))
sequence.export(os.path.join(OUT, "keras_sequence"), verbose=False)
vectorize = L.TextVectorization(max_tokens=20, output_sequence_length=5)
vectorize.adapt(["the cat sat", "a dog ran far away"])
sentence = keras.Input((), dtype="string")
z = L.GlobalAveragePooling1D()(L.Embedding(20, 4)(vectorize(sentence)))
keras.Model(sentence, z).export(os.path.join(OUT, "keras_text_vectorization"), verbose=False)


class Ops(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def __call__(self, x):
        return {
            "top_k": tf.math.top_k(x, 3).values,
            "argsort": tf.argsort(x),
            "resize": tf.image.resize(tf.reshape(x, [-1, 2, 4, 1]), [4, 8]),
            "rfft": tf.abs(tf.signal.rfft(x)),
            "gram": tf.linalg.matmul(x, x, transpose_b=True),
            "cumsum": tf.math.cumsum(x, axis=1),
            "relu": tf.where(x > 0, x, tf.zeros_like(x)),
            "one_hot": tf.one_hot(tf.argmax(x, 1), 8),
            "l2": tf.nn.l2_normalize(x, 1),
            "clip": tf.clip_by_value(x, -1, 1),
            "logsumexp": tf.math.reduce_logsumexp(tf.nn.log_softmax(x), 1),
            "joined": tf.strings.reduce_join(tf.strings.as_string(x), axis=1),
            "sorted": tf.sort(x),
            "einsum": tf.einsum("ij,ij->i", x, x),
            "finite": tf.debugging.assert_all_finite(x, "finite"),
        }


module = Ops()
save("tf_ops", module, module.__call__)

# ------------------------------------------------------------------ after the save
from tensorflow.core.protobuf import saved_model_pb2

path = os.path.join(OUT, "asset_escape", "saved_model.pb")
model = saved_model_pb2.SavedModel.FromString(open(path, "rb").read())
model.meta_graphs[0].asset_file_def[0].filename = "/proc/self/cwd/" + S  # os.path.join(assets, abs) == abs
open(path, "wb").write(model.SerializeToString())
os.remove(vocab)
print("built")
'''

# Loads each sample (argv[3:]) in its own new working dir holding SECRET; prints one JSON line.
PROVE = r'''
import json, os, sys, tempfile
import tensorflow as tf

M, S = sys.argv[1], sys.argv[2]


def sample_input(spec):
    shape = [2 if d is None else d for d in spec.shape.as_list()]
    return tf.fill(shape, "red") if spec.dtype == tf.string else tf.ones(shape, spec.dtype)


def call_signatures(path):
    """Every signature's outputs, as text (a model that returns SECRET's content or name read it)."""
    model = tf.saved_model.load(path)
    texts = []
    for fn in model.signatures.values():
        out = fn(**{k: sample_input(v) for k, v in fn.structured_input_signature[1].items()})
        texts.append(repr({k: v.numpy() for k, v in out.items()}))
    return texts


def read_checkpoint(path):
    prefix = os.path.join(path, next(n for n in os.listdir(path) if n.endswith(".index"))[: -len(".index")])
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    values = {n: None if dtypes[n] == tf.variant else reader.get_tensor(n) for n in dtypes}
    return {n: (dtypes[n].name, v if v is None or isinstance(v, bytes) else v.tolist()) for n, v in values.items()}


def run(path):
    work = tempfile.mkdtemp(prefix="modelgate-live-")
    os.chdir(work)
    with open(S, "w") as handle:
        handle.write("modelgate secret line\n")
    with tf.io.TFRecordWriter(S + ".tfrecord") as writer:
        writer.write(b"modelgate secret line")
    result = {"error": None, "outputs": 0, "tensors": None}
    try:
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            texts = call_signatures(path)
            result["outputs"] = len(texts)
            if any("modelgate secret line" in t or S in t for t in texts):
                open(M, "w").close()  # the model handed back a file of its choosing
        else:
            result["tensors"] = read_checkpoint(path)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:400]
    result["ran"] = os.path.exists(os.path.join(work, M))
    return result


print("RESULT " + json.dumps({os.path.basename(p): run(p) for p in sys.argv[3:]}, default=str))
'''

# sample -> (rule, the op or name its blocking finding must mention)
MALICIOUS = {
    "write_file": ("saved-model.dangerous-op", "WriteFile"),
    "print_file": ("saved-model.dangerous-op", "PrintV2"),
    "read_file": ("saved-model.dangerous-op", "ReadFile"),
    "matching_files": ("saved-model.dangerous-op", "MatchingFiles"),
    "table_from_file": ("saved-model.dangerous-op", "InitializeTableFromTextFileV2"),
    "table_from_captured_constant": ("saved-model.dangerous-op", "InitializeTableFromTextFileV2"),
    "table_path_in_variable": ("saved-model.dangerous-op", "InitializeTableFromTextFileV2"),
    "save_v2": ("saved-model.dangerous-op", "SaveV2"),
    "saver_via_call": ("saved-model.dangerous-op", "SaveV2"),  # a constant passed into a function's path argument
    "text_line_dataset": ("saved-model.dangerous-op", "TextLineDataset"),
    "tfrecord_dataset": ("saved-model.dangerous-op", "TFRecordDataset"),
    "nested_cond": ("saved-model.dangerous-op", "WriteFile"),  # in a tf.function called from a tf.cond branch
    "while_print": ("saved-model.dangerous-op", "PrintV2"),  # in a tf.while_loop body
    "summary_writer": ("saved-model.dangerous-op", "CreateSummaryFileWriter"),
    "asset_escape": ("saved-model.asset-escape", "/proc/self/cwd/"),  # a table fed an asset outside assets/
}
BENIGN_SAVED_MODELS = [
    "mlp",
    "sharded",  # two data shards
    "control_flow",
    "multi_signature",
    "dtypes",
    "static_table",
    "vocab_asset",
    "keras_cnn",
    "keras_rnn",
    "keras_text",
    "keras_attention",
    "keras_vision",  # separable and transposed convolutions, resizing, group norm, PReLU
    "keras_sequence",  # Conv1D, a bidirectional LSTM, SimpleRNN
    "keras_text_vectorization",  # TextVectorization: string ops and an in-graph vocabulary table
    "tf_ops",  # top-k, sort, resize, FFT, einsum, string joins, numeric checks
]
BENIGN_CHECKPOINTS = ["checkpoint", "py_bundle"]  # py_bundle: written by write_bundle() (tests/helpers/saved_models.py)


def _tf_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MODELGATE_", "PYTHON"))}
    env.update(PYTHONPATH=str(TF221), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    return env


def _tf_child(code: str, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with TensorFlow in a fresh interpreter whose working dir is a new temp dir."""
    with tempfile.TemporaryDirectory(prefix="modelgate-tf-") as workdir:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=workdir,
            env=_tf_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (TF221 / "tensorflow" / "__init__.py").is_file():
        missing_loader(f"TensorFlow 2.21 is not installed in {TF221}")
    out = tmp_path_factory.mktemp("saved-models")
    done = _tf_child(BUILD, str(out), MARKER, SECRET)
    if done.returncode != 0 or "built" not in done.stdout:
        pytest.fail(f"building the samples failed: {done.stderr[-3000:]}")
    write_bundle(out / "py_bundle", "ckpt", TENSORS)
    return out


@pytest.fixture(scope="module")
def live(samples: Path) -> dict[str, dict[str, Any]]:
    """Each sample loaded (and every signature called) by TensorFlow in its own new working dir."""
    names = [*MALICIOUS, *BENIGN_SAVED_MODELS, *BENIGN_CHECKPOINTS, "iterator_checkpoint"]
    done = _tf_child(PROVE, MARKER, SECRET, *(str(samples / n) for n in names))
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        pytest.fail(f"the TensorFlow loader child failed: {done.stderr[-3000:]}")
    results: dict[str, dict[str, Any]] = json.loads(line[len("RESULT ") :])
    return results


def _messages(report: ScanReport) -> list[str]:
    return [f"{f.file}: {f.rule_id}: {f.message}" for f in report.findings]


# --------------------------------------------------------------------------- malicious, proven live


@pytest.mark.parametrize("name", list(MALICIOUS))
def test_a_payload_that_runs_under_tensorflow_blocks(samples: Path, live: dict[str, dict[str, Any]], name: str) -> None:
    assert live[name]["ran"], f"TensorFlow did not run the {name} payload: {live[name]}"
    report = scan_path(samples / name)
    rule, mention = MALICIOUS[name]
    assert report.verdict == "unsafe"
    assert any(f.rule_id == rule and mention in f.message for f in report.findings), _messages(report)
    assert all(f.file == "saved_model.pb" for f in report.findings if f.category in BLOCKING), _messages(report)


# --------------------------------------------------------------------------- benign, loaded live


@pytest.mark.parametrize("name", BENIGN_SAVED_MODELS)
def test_a_real_benign_saved_model_passes(samples: Path, live: dict[str, dict[str, Any]], name: str) -> None:
    result = live[name]
    assert result["error"] is None and result["outputs"] > 0 and not result["ran"], result
    report = scan_path(samples / name)
    assert report.verdict == "safe" and not report.findings, _messages(report)
    formats = {f.path: f.format for f in report.files}
    assert formats["saved_model.pb"] == "saved-model"
    assert formats["fingerprint.pb"] == "saved-model-fingerprint"
    assert formats["variables/variables.index"] == "tf-bundle"
    shards = [p for p in formats if p.startswith("variables/variables.data-")]
    assert shards and all(formats[p] == "tf-bundle-data" for p in shards)
    assert len(shards) == (2 if name == "sharded" else 1)


@pytest.mark.parametrize("name", BENIGN_CHECKPOINTS)
def test_a_real_checkpoint_passes_as_a_tensor_bundle(samples: Path, live: dict[str, dict[str, Any]], name: str) -> None:
    result = live[name]
    assert result["error"] is None and result["tensors"], result
    report = scan_path(samples / name)
    assert report.verdict == "safe" and not report.findings, _messages(report)
    assert {f.path: f.format for f in report.files} == {
        "ckpt.index": "tf-bundle",
        "ckpt.data-00000-of-00001": "tf-bundle-data",
    }


def test_the_python_bundle_writer_writes_what_tensorflow_reads(live: dict[str, dict[str, Any]]) -> None:
    # TensorFlow checks every block CRC and each tensor's CRC32C: the hand-made indexes below are real.
    tensors = live["py_bundle"]["tensors"]
    assert {name: (dtype, values) for name, (dtype, values) in tensors.items()} == {
        name: (dtype, array.tolist()) for name, (dtype, array) in TF_NAMES.items()
    }


def test_a_real_dt_variant_entry_blocks(samples: Path, live: dict[str, dict[str, Any]]) -> None:
    # tf.data iterator state is a DT_VARIANT: C++ decoders rebuild it, and the scanner does not read it.
    assert live["iterator_checkpoint"]["tensors"]["it/.ATTRIBUTES/ITERATOR_STATE"][0] == "variant"
    report = scan_path(samples / "iterator_checkpoint")
    assert "tf-bundle.variant" in {f.rule_id for f in report.findings} and report.verdict == "unsafe"


def test_the_files_beside_saved_model_pb_need_it_and_each_other(samples: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(samples / "mlp", tmp_path / "mlp")
    (folder / "saved_model.pb").unlink()  # the fingerprint is trusted only beside the graph it fingerprints
    report = scan_path(folder)
    assert {f.path: f.format for f in report.files}["fingerprint.pb"] == "unrecognized"
    assert {f.rule_id for f in report.findings} == {"content.unrecognized"}
    (folder / "variables" / "variables.index").unlink()  # the shard without its index
    assert {f.file for f in scan_path(folder).findings} == {"fingerprint.pb", "variables/variables.data-00000-of-00001"}


def test_a_real_index_truncated_or_bit_flipped_always_blocks(samples: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(samples / "mlp", tmp_path / "mlp")
    index = folder / "variables" / "variables.index"
    data = index.read_bytes()
    for pos in range(len(data) * 8):  # every single-bit flip fails a CRC, a bound or the footer
        flipped = bytearray(data)
        flipped[pos // 8] ^= 1 << (pos % 8)
        with pytest.raises((tf_bundle.Bad, tf_bundle.Unsupported)):
            tf_bundle.read_index(bytes(flipped))
    for cut in [*range(1, len(data), 11), len(data) - 1]:
        index.write_bytes(data[:cut])
        _assert_index_blocks(scan_path(folder))
    for pos in range(0, len(data) * 8, 37):
        flipped = bytearray(data)
        flipped[pos // 8] ^= 1 << (pos % 8)
        index.write_bytes(bytes(flipped))
        _assert_index_blocks(scan_path(folder))


def _assert_index_blocks(report: ScanReport) -> None:
    index = next(f for f in report.files if f.path == "variables/variables.index")
    assert index.verdict == "unsafe", _messages(report)
    assert not any(f.rule_id == "scanner.parse-error" for f in report.findings), _messages(report)  # never a crash


# ---------------------------------------------------- a tensor bundle, by hand (tests/helpers/saved_models.py)


def _replace(key: bytes, value: bytes) -> Callable[[list[tuple[bytes, bytes]]], None]:
    def edit(entries: list[tuple[bytes, bytes]]) -> None:
        entries[[k for k, _v in entries].index(key)] = (key, value)

    return edit


def _kernel(**changes: int) -> bytes:
    fields = {"dtype": 1, "offset": 12, "size": 48, "shard": 0} | changes
    return bundle_entry(fields["dtype"], (3, 4), fields["offset"], fields["size"], 0, fields["shard"])


def test_a_hand_written_bundle_passes(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path, "ckpt", TENSORS)
    report = scan_path(folder)
    assert report.verdict == "safe" and not report.findings, _messages(report)
    assert {f.path: f.format for f in report.files} == {
        "ckpt.index": "tf-bundle",
        "ckpt.data-00000-of-00001": "tf-bundle-data",
    }


def _swap_two(entries: list[tuple[bytes, bytes]]) -> None:
    entries[1], entries[2] = entries[2], entries[1]


def _unknown_field(entries: list[tuple[bytes, bytes]]) -> None:
    entries[1] = (entries[1][0], entries[1][1] + varint_field(9, 1))


def _no_header(entries: list[tuple[bytes, bytes]]) -> None:
    del entries[0]


def _kernel_as(**changes: int) -> dict[str, Any]:
    """Table options that replace dense/kernel's entry (offset 12, 48 bytes) with ``changes``."""
    return {"edit": _replace(b"dense/kernel", _kernel(**changes))}


# how the index is broken -> (table options, rule, text its message must hold)
_BROKEN: dict[str, tuple[dict[str, Any], str, str]] = {
    "entry past its shard": (_kernel_as(offset=100), "tf-bundle.out-of-shard", "past"),
    "two entries share bytes": (_kernel_as(offset=4), "tf-bundle.overlap", "overlap"),
    "shard bytes no entry reads": (_kernel_as(offset=16), "tf-bundle.unread-bytes", "read by no entry"),
    "size is not the shape's": (_kernel_as(size=44), "tf-bundle.malformed", "shape"),
    "a shard beyond num_shards": (_kernel_as(shard=3), "tf-bundle.malformed", "shard 3"),
    "DT_VARIANT": (_kernel_as(dtype=21), "tf-bundle.variant", "DT_VARIANT"),
    "DT_RESOURCE": (_kernel_as(dtype=20), "tf-bundle.variant", "DT_RESOURCE"),
    "unknown dtype": (_kernel_as(dtype=99), "tf-bundle.malformed", "dtype"),
    "keys out of order": ({"edit": _swap_two}, "tf-bundle.malformed", "not after"),
    "an unknown entry field": ({"edit": _unknown_field}, "tf-bundle.malformed", "unexpected field 9"),
    "no header entry": ({"edit": _no_header}, "content.unrecognized", ""),  # not even detected as an index
    "a snappy block": ({"compression": 1}, "tf-bundle.unsupported", "compressed"),
}


@pytest.mark.parametrize("how", list(_BROKEN))
def test_a_broken_or_unread_index_blocks(tmp_path: Path, how: str) -> None:
    table, rule, text = _BROKEN[how]
    write_bundle(tmp_path, "ckpt", TENSORS, **table)
    report = scan_path(tmp_path)
    assert report.verdict == "unsafe"
    assert any(f.rule_id == rule and text in f.message for f in report.findings), _messages(report)
    assert {f.path: f.format for f in report.files}["ckpt.data-00000-of-00001"] == "unrecognized"


def test_shards_must_be_exactly_those_the_header_names(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path, "ckpt", TENSORS)
    (folder / "ckpt.data-00001-of-00002").write_bytes(b"\x00" * 8)
    assert "tf-bundle.stray-shard" in {f.rule_id for f in scan_path(folder).findings}
    (folder / "ckpt.data-00001-of-00002").unlink()
    (folder / "ckpt.data-00000-of-00001").unlink()
    assert {f.rule_id for f in scan_path(folder).findings} == {"tf-bundle.missing-shard"}
    (folder / "ckpt.data-00000-of-00001").symlink_to(folder / "ckpt.index")
    assert "tf-bundle.missing-shard" in {f.rule_id for f in scan_path(folder).findings}


def test_an_index_not_named_dot_index_or_inside_an_archive_is_not_vouched_for(tmp_path: Path) -> None:
    import tarfile

    folder = write_bundle(tmp_path / "b", "ckpt", TENSORS)
    with tarfile.open(tmp_path / "ckpt.tar", "w") as archive:
        archive.add(folder / "ckpt.index", "ckpt.index")
    assert "tf-bundle.unchecked-shards" in {f.rule_id for f in scan_path(tmp_path / "ckpt.tar").findings}
    (folder / "ckpt.index").rename(folder / "ckpt.idx")
    assert "tf-bundle.unnamed" in {f.rule_id for f in scan_path(folder).findings}


def test_a_shard_that_is_a_pickle_keeps_its_own_verdict(tmp_path: Path) -> None:
    from tests.helpers.pickle_attacks import payload_pickle

    evil = np.frombuffer(payload_pickle(), dtype=np.uint8)
    report = scan_path(write_bundle(tmp_path, "ckpt", {"bytes": evil}))
    assert {f.path: f.format for f in report.files}["ckpt.data-00000-of-00001"] == "pickle"
    assert any(f.global_name == "os.system" for f in report.findings), _messages(report)


def test_every_cut_and_bit_flip_of_a_hand_written_index_is_refused(tmp_path: Path) -> None:
    entries, _shard = bundle_entries(TENSORS)
    data = bundle_index(entries)
    header, parsed = tf_bundle.read_index(data)
    assert header.num_shards == 1 and [e.key for e in parsed] == sorted(k.encode() for k in TENSORS)
    for cut in range(len(data)):
        with pytest.raises((tf_bundle.Bad, tf_bundle.Unsupported)):
            tf_bundle.read_index(data[:cut])
    for pos in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[pos // 8] ^= 1 << (pos % 8)
        with pytest.raises((tf_bundle.Bad, tf_bundle.Unsupported)):
            tf_bundle.read_index(bytes(flipped))
    write_bundle(tmp_path, "ckpt", TENSORS)
    index = tmp_path / "ckpt.index"
    for junk in (data + b"\x00", b"\x00" * 48 + data[-8:], data[:-48] + b"\x00" + data[-48:]):
        index.write_bytes(junk)
        report = scan_path(tmp_path)
        assert report.verdict == "unsafe" and "scanner.parse-error" not in {f.rule_id for f in report.findings}


def test_crc32c_is_castagnoli() -> None:
    assert tf_bundle.crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert tf_bundle.crc32c(b"") == 0


# --------------------------------------------------------------------------- fingerprint.pb


_FINGERPRINT = (
    varint_field(1, 1234)
    + varint_field(2, 1)
    + varint_field(3, 2)
    + varint_field(4, 3)
    + varint_field(5, 4)
    + field(6, varint_field(1, 1))
    + field(7, b"0f3a")
)


@pytest.mark.parametrize(
    ("fingerprint", "safe"),
    [
        (_FINGERPRINT, True),
        (b"", True),  # every field at its default
        (_FINGERPRINT + varint_field(8, 1), False),  # a field FingerprintDef does not have
        (_FINGERPRINT + field(1, b"x"), False),  # a hash as bytes
        (_FINGERPRINT + varint_field(2, 9), False),  # a hash twice
        (_FINGERPRINT[:-1], False),  # cut
        (field(6, b"\xff"), False),  # a VersionDef that does not parse
        (varint_field(1, 1) + field(7, b"\x00\x01"), False),  # a uuid that is not text
        (b"\x80" * 5000, False),
    ],
)
def test_fingerprint_is_read_strictly_as_a_fingerprintdef(tmp_path: Path, fingerprint: bytes, safe: bool) -> None:
    (tmp_path / "saved_model.pb").write_bytes(benign_saved_model())
    (tmp_path / "fingerprint.pb").write_bytes(fingerprint)
    report = scan_path(tmp_path)
    assert (report.verdict == "safe") is safe, _messages(report)
    if not safe:
        assert "saved-model.fingerprint" in {f.rule_id for f in report.findings}
