"""Keras model configs (``.keras`` ``config.json``, ``.h5`` ``model_config``): code and custom objects.

A Lambda layer carries marshalled Python bytecode; a custom object needs its
class imported at load time. Both hide at any depth (a Lambda inside a Sequential
inside a Functional model), so the whole JSON tree is walked. Keras 3 configs name
each object's ``module``; Keras 2 configs only have ``class_name``, checked
against the standard Keras classes.
"""

from __future__ import annotations

from modelgate.scan.base import ScanContext
from modelgate.scan.findings import Category, Severity

_CODE_CLASSES = frozenset({"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"})
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")
_MAX_DEPTH = 256
_MAX_FINDINGS = 100


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STANDARD_CLASSES = _names(
    """
    Sequential Functional Model InputLayer Input Dense Activation Dropout Flatten Reshape Permute RepeatVector
    Masking Embedding EinsumDense Identity SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise
    GaussianDropout AlphaDropout ActivityRegularization Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose
    Conv3DTranspose SeparableConv1D SeparableConv2D DepthwiseConv1D DepthwiseConv2D Convolution1D Convolution2D
    Convolution3D Cropping1D Cropping2D Cropping3D UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D
    ZeroPadding2D ZeroPadding3D MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D
    AveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalAveragePooling1D
    GlobalAveragePooling2D GlobalAveragePooling3D MaxPool1D MaxPool2D MaxPool3D AvgPool1D AvgPool2D AvgPool3D
    GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D LSTM GRU
    SimpleRNN RNN Bidirectional TimeDistributed LSTMCell GRUCell SimpleRNNCell StackedRNNCells ConvLSTM1D
    ConvLSTM2D ConvLSTM3D CuDNNLSTM CuDNNGRU BatchNormalization LayerNormalization GroupNormalization
    UnitNormalization Normalization SyncBatchNormalization Add Subtract Multiply Average Maximum Minimum
    Concatenate Dot Attention AdditiveAttention MultiHeadAttention ReLU LeakyReLU PReLU ELU ThresholdedReLU
    Softmax Rescaling Resizing CenterCrop RandomFlip RandomRotation RandomZoom RandomTranslation RandomContrast
    RandomCrop RandomHeight RandomWidth Discretization CategoryEncoding Hashing StringLookup IntegerLookup
    TextVectorization Zeros Ones Constant RandomNormal RandomUniform TruncatedNormal VarianceScaling Orthogonal
    GlorotNormal GlorotUniform HeNormal HeUniform LecunNormal LecunUniform L1 L2 L1L2 OrthogonalRegularizer
    MaxNorm MinMaxNorm NonNeg UnitNorm RadialConstraint SGD Adam AdamW RMSprop Adagrad Adadelta Adamax Nadam
    Ftrl Lion Adafactor ExponentialDecay PiecewiseConstantDecay PolynomialDecay InverseTimeDecay CosineDecay
    CosineDecayRestarts Policy DTypePolicy FloatDTypePolicy
    """
)


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
        module = node.get("module")
        registered = node.get("registered_name")
        if self.keras3:
            if module is not None and not _keras_module(module):
                self.add("keras.custom-object", Category.UNKNOWN, f"{label} comes from module {module!r}: custom code")
            elif registered is not None and registered not in (cls, "function") and not _standard(str(registered)):
                self.add("keras.custom-object", Category.UNKNOWN, f"{label} is registered as custom {registered!r}")
        elif not _standard(cls):
            self.add("keras.custom-object", Category.UNKNOWN, f"{label} is not a standard Keras class: custom code")


def _keras_module(module: object) -> bool:
    return isinstance(module, str) and any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES)


def _standard(cls: str) -> bool:
    return cls.removeprefix("Custom>") in _STANDARD_CLASSES


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
