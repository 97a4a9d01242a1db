"""The Keras objects a model config may name: what Keras 3 / tf.keras deserialize as modeling objects.

Generated from the public API of keras 3.15.1 (``keras.layers``, ``initializers``, ``regularizers``,
``constraints``, ``optimizers`` (+ ``schedules``), ``losses``, ``metrics``, ``activations``,
``dtype_policies``, ``quantizers``), minus abstract base classes and the layers that run code or
read files (``Lambda``, ``TFSMLayer``, ``TorchModuleWrapper``, ``JaxLayer``, ``FlaxLayer``), plus the
internal modules Keras itself records (``Functional``, backend optimizers) and the Keras 2 names of
tf.keras configs. Anything not listed is not a standard modeling object.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# public module -> class names that deserialize as modeling objects
CLASSES: dict[str, frozenset[str]] = {
    "keras.layers": _names(
        """
        Activation ActivityRegularization AdaptiveAveragePooling1D AdaptiveAveragePooling2D
        AdaptiveAveragePooling3D AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add
        AdditiveAttention AlphaDropout Attention AugMix AutoContrast Average AveragePooling1D
        AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D AvgPool3D BatchNormalization Bidirectional
        CategoryEncoding CenterCrop Concatenate ContrastLimitedAdaptiveHistogramEqualization Conv1D
        Conv1DTranspose Conv2D Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM1D ConvLSTM2D ConvLSTM3D
        Convolution1D Convolution1DTranspose Convolution2D Convolution2DTranspose Convolution3D
        Convolution3DTranspose Cropping1D Cropping2D Cropping3D CutMix Dense DepthwiseConv1D DepthwiseConv2D
        Discretization Dot Dropout ELU EinsumDense Embedding Equalization Flatten GRU GRUCell
        GaussianDropout GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
        GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D
        GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GroupNormalization GroupQueryAttention
        HashedCrossing Hashing Identity InputLayer InputSpec IntegerLookup LSTM LSTMCell LayerNormalization
        LeakyReLU Masking MaxNumBoundingBoxes MaxPool1D MaxPool2D MaxPool3D MaxPooling1D MaxPooling2D
        MaxPooling3D Maximum MelSpectrogram Minimum MixUp MultiHeadAttention Multiply Normalization PReLU
        Permute Pipeline RMSNormalization RNN RandAugment RandomBrightness RandomColorDegeneration
        RandomColorJitter RandomContrast RandomCrop RandomElasticTransform RandomErasing RandomFlip
        RandomGaussianBlur RandomGrayscale RandomHue RandomInvert RandomPerspective RandomPosterization
        RandomRotation RandomSaturation RandomSharpness RandomShear RandomTranslation RandomZoom ReLU
        RepeatVector Rescaling Reshape Resizing ReversibleEmbedding STFTSpectrogram SeparableConv1D
        SeparableConv2D SeparableConvolution1D SeparableConvolution2D SimpleRNN SimpleRNNCell Softmax
        Solarization SpatialDropout1D SpatialDropout2D SpatialDropout3D SpectralNormalization
        StackedRNNCells StringLookup Subtract TextVectorization TimeDistributed UnitNormalization
        UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D
        """
    ),
    "keras.initializers": _names(
        """
        Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer LecunNormal
        LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal RandomUniform STFT STFTInitializer
        TruncatedNormal VarianceScaling Zeros constant glorot_normal glorot_uniform he_normal he_uniform
        identity lecun_normal lecun_uniform ones orthogonal random_normal random_uniform stft
        truncated_normal variance_scaling zeros
        """
    ),
    "keras.regularizers": _names(
        """
        L1 L1L2 L2 OrthogonalRegularizer l1 l1_l2 l2 orthogonal_regularizer
        """
    ),
    "keras.constraints": _names(
        """
        MaxNorm MinMaxNorm NonNeg UnitNorm max_norm min_max_norm non_neg unit_norm
        """
    ),
    "keras.optimizers": _names(
        """
        Adadelta Adafactor Adagrad Adam AdamW Adamax Ftrl Lamb Lion LossScaleOptimizer MultiOptimizer Muon
        Nadam OptimizerMap RMSprop SGD ScheduleFreeAdamW
        """
    ),
    "keras.optimizers.schedules": _names(
        """
        CosineDecay CosineDecayRestarts ExponentialDecay InverseTimeDecay PiecewiseConstantDecay
        PolynomialDecay
        """
    ),
    "keras.losses": _names(
        """
        BinaryCrossentropy BinaryFocalCrossentropy CTC CategoricalCrossentropy CategoricalFocalCrossentropy
        CategoricalGeneralizedCrossEntropy CategoricalHinge Circle CosineSimilarity Dice Hinge Huber
        KLDivergence LogCosh MeanAbsoluteError MeanAbsolutePercentageError MeanSquaredError
        MeanSquaredLogarithmicError Poisson SparseCategoricalCrossentropy SquaredHinge Tversky
        """
    ),
    "keras.metrics": _names(
        """
        AUC Accuracy BinaryAccuracy BinaryCrossentropy BinaryIoU CategoricalAccuracy CategoricalCrossentropy
        CategoricalHinge ConcordanceCorrelation CosineSimilarity F1Score FBetaScore FalseNegatives
        FalsePositives Hinge IoU KLDivergence LogCoshError Mean MeanAbsoluteError
        MeanAbsolutePercentageError MeanIoU MeanMetricWrapper MeanSquaredError MeanSquaredLogarithmicError
        OneHotIoU OneHotMeanIoU PearsonCorrelation Poisson Precision PrecisionAtRecall R2Score Recall
        RecallAtPrecision RootMeanSquaredError SensitivityAtSpecificity SparseCategoricalAccuracy
        SparseCategoricalCrossentropy SparseTopKCategoricalAccuracy SpecificityAtSensitivity SquaredHinge
        Sum TopKCategoricalAccuracy TrueNegatives TruePositives
        """
    ),
    "keras.dtype_policies": _names(
        """
        AWQDTypePolicy DTypePolicy DTypePolicyMap FloatDTypePolicy GPTQDTypePolicy Int4DTypePolicy
        QuantizedDTypePolicy QuantizedFloat8DTypePolicy
        """
    ),
    "keras.quantizers": _names(
        """
        AWQConfig AbsMaxQuantizer Float8QuantizationConfig GPTQConfig Int4QuantizationConfig
        Int8QuantizationConfig
        """
    ),
}

# public module -> plain functions (activations, losses, metrics) a config may name
FUNCTIONS: dict[str, frozenset[str]] = {
    "keras.losses": _names(
        """
        binary_crossentropy binary_focal_crossentropy categorical_crossentropy
        categorical_focal_crossentropy categorical_generalized_cross_entropy categorical_hinge circle
        cosine_similarity ctc dice hinge huber kl_divergence log_cosh mean_absolute_error
        mean_absolute_percentage_error mean_squared_error mean_squared_logarithmic_error poisson
        sparse_categorical_crossentropy squared_hinge tversky
        """
    ),
    "keras.metrics": _names(
        """
        binary_accuracy binary_crossentropy binary_focal_crossentropy categorical_accuracy
        categorical_crossentropy categorical_focal_crossentropy categorical_hinge concordance_correlation
        hinge huber kl_divergence log_cosh mean_absolute_error mean_absolute_percentage_error
        mean_squared_error mean_squared_logarithmic_error pearson_correlation poisson
        sparse_categorical_accuracy sparse_categorical_crossentropy sparse_top_k_categorical_accuracy
        squared_hinge top_k_categorical_accuracy
        """
    ),
    "keras.activations": _names(
        """
        celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh leaky_relu
        linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu soft_shrink softmax softplus
        softsign sparse_plus sparse_sigmoid sparsemax squareplus swish tanh tanh_shrink threshold
        """
    ),
}

# the torch backend records its optimizer subclasses under their own modules
TORCH_OPTIMIZERS: dict[str, str] = {
    "keras.src.backend.torch.optimizers.torch_adadelta": "Adadelta",
    "keras.src.backend.torch.optimizers.torch_adagrad": "Adagrad",
    "keras.src.backend.torch.optimizers.torch_adam": "Adam",
    "keras.src.backend.torch.optimizers.torch_adamax": "Adamax",
    "keras.src.backend.torch.optimizers.torch_adamw": "AdamW",
    "keras.src.backend.torch.optimizers.torch_lion": "Lion",
    "keras.src.backend.torch.optimizers.torch_nadam": "Nadam",
    "keras.src.backend.torch.optimizers.torch_rmsprop": "RMSprop",
    "keras.src.backend.torch.optimizers.torch_sgd": "SGD",
}

# (module, class) pairs Keras records for objects without a public path, and tf.keras 2.13+ modules
EXTRA_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("keras", "Sequential"),
        ("keras", "Model"),
        ("keras", "DTypePolicy"),
        ("keras", "FloatDTypePolicy"),
        ("keras.models", "Sequential"),
        ("keras.models", "Model"),
        ("keras.src.models.functional", "Functional"),
        ("keras.src.models.sequential", "Sequential"),
        ("keras.src.models.model", "Model"),
        ("keras.src.engine.functional", "Functional"),
        ("keras.src.engine.sequential", "Sequential"),
        ("keras.src.engine.training", "Model"),
        ("keras.src.engine.input_layer", "InputLayer"),
        ("keras.engine.functional", "Functional"),
        ("keras.engine.sequential", "Sequential"),
        ("keras.engine.training", "Model"),
        ("keras.engine.input_layer", "InputLayer"),
        ("keras.mixed_precision", "Policy"),
        ("keras.mixed_precision", "DTypePolicy"),
        *(("keras.optimizers.legacy", name) for name in _names("SGD Adam RMSprop Adagrad Adadelta Adamax Nadam Ftrl")),
        *(("keras.layers", name) for name in _names("CuDNNLSTM CuDNNGRU SyncBatchNormalization ThresholdedReLU")),
        *(("keras.layers", name) for name in _names("LocallyConnected1D LocallyConnected2D")),
    }
)

# Special class names of Keras 3 serialization that build values, not objects from a module.
VALUE_CLASSES = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"})

# Keras 2 (``.h5`` ``model_config``) configs have only class names, resolved in Keras's own modules.
KERAS2_CLASSES = _names(
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

# Keras namespaces whose members download, read or write files, load models or change loader settings.
DANGEROUS_PREFIXES = (
    "keras.utils",
    "keras.saving",
    "keras.legacy.saving",
    "keras.models.load_model",
    "keras.models.model_from_json",
    "keras.models.model_from_yaml",
    "keras.models.save_model",
    "keras.config",
    "keras.backend",
    "keras.datasets",
    "keras.preprocessing",
    "keras.callbacks",
    "keras.export",
    "keras.visualization",
    "keras.distribution",
    "keras.applications",
    "keras.layers.TFSMLayer",
    "keras.layers.TorchModuleWrapper",
    "keras.layers.Lambda",
)


def pairs() -> frozenset[tuple[str, str]]:
    """Every allowed (module, class_name) pair."""
    found = {(module, name) for module, names in CLASSES.items() for name in names}
    found |= {(module, name) for module, name in TORCH_OPTIMIZERS.items()}
    return frozenset(found | EXTRA_PAIRS)


def builtin_functions() -> frozenset[str]:
    """Function names Keras resolves for ``module: builtins`` (its BUILTIN_MODULES)."""
    found: set[str] = set()
    for module in ("keras.activations", "keras.losses", "keras.metrics"):
        found |= FUNCTIONS.get(module, frozenset())
    for module in ("keras.initializers", "keras.regularizers", "keras.constraints"):
        found |= {name for name in CLASSES.get(module, frozenset()) if name.islower()}
    return frozenset(found)
