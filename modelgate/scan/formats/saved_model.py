"""TensorFlow SavedModel (``saved_model.pb``, ``keras_metadata.pb``): every op, judged by allowlist.

A SavedModel is a graph that TensorFlow runs: ops such as ``WriteFile``, ``ReadFile``,
``MatchingFiles``, ``PyFunc`` or ``PrintV2`` to a file touch the machine when a signature
(or the restore function) is called. The protobuf is walked by hand (no TensorFlow):
SavedModel{2: meta_graphs} > MetaGraphDef{2: graph_def} > GraphDef{1: node, 2: library} >
NodeDef{2: op}; FunctionDefLibrary{1: function} > FunctionDef{3: node_def}. Every op of the
main graph and of every library function is collected: file, system, Python and network ops
are ``dangerous``; ops outside the allowlist are ``unknown``; a call of a library function
is allowed (the function is checked itself).

The saver ops that every SavedModel carries (``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``,
``ShardedFilename``) read and write the checkpoint at the path the *loader* feeds in; they are
allowed unless their path is built from constants only (then the graph writes or reads a
file of its own choosing: ``dangerous``). ``keras_metadata.pb`` carries each layer's Keras
config as JSON: it goes through the Keras config check (Lambda layers, custom objects).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.protobuf_wire import varint

NAME = "saved-model"
_TEXT_STARTS = (b"saved_model_schema_version", b"meta_graphs")
_MAX_DEPTH = 64
_MAX_FINDINGS = 100


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DANGEROUS_OPS = _words(
    """
    ReadFile WriteFile MatchingFiles MatchingFilesDataset FileSystemSetConfiguration DeleteFile
    PyFunc PyFuncStateless EagerPyFunc ImmutableConst LoadAndRemapMatrix Save SaveSlices Restore RestoreSlice
    PrintV2 DebugIdentity DebugIdentityV2 DebugIdentityV3 DebugNanCount DebugNumericSummary DebugNumericSummaryV2
    WholeFileReader WholeFileReaderV2 TextLineReader TextLineReaderV2 FixedLengthRecordReader
    FixedLengthRecordReaderV2 TFRecordReader TFRecordReaderV2 LMDBReader IdentityReader IdentityReaderV2
    ReaderRead ReaderReadV2 ReaderReadUpTo ReaderReadUpToV2 ReaderRestoreState ReaderRestoreStateV2
    TextLineDataset TFRecordDataset TFRecordDatasetV2 FixedLengthRecordDataset FixedLengthRecordDatasetV2
    SnapshotDataset SnapshotDatasetV2 SaveDataset SaveDatasetV2 LoadDataset ExperimentalLMDBDataset
    CreateSummaryFileWriter CreateSummaryDbWriter WriteSummary WriteAudioSummary WriteGraphSummary
    WriteHistogramSummary WriteImageSummary WriteRawProtoSummary WriteScalarSummary ImportEvent FlushSummaryWriter
    InitializeTableFromTextFile InitializeTableFromTextFileV2 DecodeProtoV2 EncodeProto
    RpcCall RpcClient RpcServer RpcServerStart RpcServerRegister RpcCheckStatus RpcGetValue DeleteRpcFutureResource
    Rpc TryRpc GenerateVocabRemapping CollectiveBcastSend CollectiveBcastRecv CollectiveGather CollectiveReduce
    _Send _Recv _HostSend _HostRecv Send Recv ExperimentalSleepDataset SleepDataset DatasetFromGraph
    ExperimentalDatasetToTFRecord DatasetToTFRecord CSVDataset CSVDatasetV2 ExperimentalCSVDataset
    SqlDataset ExperimentalSqlDataset DataServiceDataset DataServiceDatasetV2 DataServiceDatasetV3
    DataServiceDatasetV4 RegisterDataset RegisterDatasetV2 LoadTPUEmbeddingParameters
    """
)
# The saver ops: allowed when the loader chooses the path (see the module docstring).
SAVER_OPS = _words("SaveV2 RestoreV2 MergeV2Checkpoints")
# Pure string/array ops that pass a constant path through unchanged.
_PATH_PASSTHROUGH = _words("Identity IdentityN StringJoin ShardedFilename ShardedFilespec Select SelectV2 Pack")
ALLOWED_OPS = (
    _words(
        """
    Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp StopGradient PreventGradient Snapshot
    VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp ResourceGather
    ResourceGatherNd ResourceScatterAdd ResourceScatterUpdate VariableV2 Variable Assign AssignAdd AssignSub
    VarIsInitializedOp DestroyResourceOp Switch Merge Enter Exit NextIteration LoopCond ControlTrigger
    StatefulPartitionedCall PartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
    SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename ShardedFilespec StringJoin StaticRegexFullMatch
    Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv TruncateMod Mod Neg
    Abs Sign Square Sqrt Rsqrt Exp Expm1 Log Log1p Pow Maximum Minimum Reciprocal Inv SquaredDifference
    Sin Cos Tan Asin Acos Atan Atan2 Sinh Cosh Tanh Asinh Acosh Atanh Erf Erfc Erfinv Lgamma Digamma
    Floor Ceil Round Rint IsNan IsInf IsFinite Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd
    LogicalOr LogicalNot Select SelectV2 ClipByValue Cast Bitcast BitwiseAnd BitwiseOr BitwiseXor Invert
    LeftShift RightShift MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum Tensordot SparseMatMul
    Sum Mean Prod Max Min Any All ArgMax ArgMin Cumsum Cumprod CumulativeLogsumexp SegmentSum SegmentMean
    SegmentMax SegmentMin UnsortedSegmentSum UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
    Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Sigmoid Softmax LogSoftmax Gelu BiasAdd BiasAddV1
    Conv1D Conv2D Conv3D Conv2DBackpropInput Conv3DBackpropInputV2 DepthwiseConv2dNative
    DepthwiseConv2dNativeBackpropInput MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D FusedBatchNorm
    FusedBatchNormV2 FusedBatchNormV3 LRN Dilation2D _FusedConv2D _FusedMatMul _FusedBatchNormEx
    L2Loss SoftmaxCrossEntropyWithLogits SparseSoftmaxCrossEntropyWithLogits InTopK InTopKV2 TopKV2 TopK
    Reshape Shape ShapeN Size Rank ExpandDims Squeeze Transpose ConjugateTranspose Concat ConcatV2
    ConcatOffset Split SplitV Slice StridedSlice StridedSliceGrad TensorScatterUpdate TensorScatterAdd
    Pack Unpack Tile Fill ZerosLike OnesLike Range LinSpace Gather GatherV2 GatherNd ScatterNd
    Pad PadV2 MirrorPad Reverse ReverseV2 ReverseSequence OneHot Where BroadcastTo BroadcastArgs
    BroadcastGradientArgs EnsureShape CheckNumerics CheckNumericsV2 Unique UniqueV2 UniqueWithCounts
    SpaceToBatchND BatchToSpaceND SpaceToDepth DepthToSpace MatrixBandPart MatrixDiag MatrixDiagV2
    MatrixDiagV3 MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2
    MatrixSetDiagV3 MatrixInverse MatrixDeterminant Cholesky Qr Svd SelfAdjointEigV2 MatrixTriangularSolve
    ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate CropAndResize
    NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5 CombinedNonMaxSuppression
    RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal StatelessRandomUniform
    StatelessRandomUniformV2 StatelessRandomNormal StatelessRandomNormalV2 StatelessTruncatedNormal
    StatelessTruncatedNormalV2 StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg
    StatelessRandomUniformIntV2 StatelessRandomUniformFullIntV2 StatelessRandomGetAlg Multinomial
    RandomShuffle StatelessShuffle
    StringToNumber AsString StringFormat StringLength Substr StringSplit StringSplitV2 StringStrip
    StringLower StringUpper RegexReplace StaticRegexReplace RegexFullMatch StringToHashBucketFast
    StringToHashBucketStrong UnicodeDecode UnicodeDecodeWithOffsets UnicodeEncode UnicodeTranscode
    ReduceJoin DecodeBase64 EncodeBase64 DecodeRaw DecodePaddedRaw DecodeJpeg DecodePng DecodeImage
    EncodeJpeg EncodePng ParseExample ParseExampleV2 ParseSingleExample ParseSequenceExample
    ParseSequenceExampleV2 ParseTensor SerializeTensor
    HashTable HashTableV2 MutableHashTable MutableHashTableV2 MutableHashTableOfTensors
    MutableHashTableOfTensorsV2 MutableDenseHashTableV2 AnonymousHashTable AnonymousMutableHashTable
    LookupTableFind LookupTableFindV2 LookupTableImport LookupTableImportV2 LookupTableExport
    LookupTableExportV2 LookupTableInsert LookupTableInsertV2 LookupTableRemoveV2 LookupTableSize
    LookupTableSizeV2 InitializeTable InitializeTableV2
    RaggedTensorToTensor RaggedTensorToVariant RaggedTensorFromVariant RaggedGather RaggedRange
    RaggedTensorToSparse RaggedTensorFromVariant SparseToDense SparseTensorDenseMatMul SparseReshape
    SparseFillEmptyRows SparseSegmentSum SparseSegmentMean SparseSegmentSqrtN SparseReduceSum Bucketize
    TensorListReserve TensorListFromTensor TensorListStack TensorListGetItem TensorListSetItem
    TensorListLength TensorListElementShape TensorListPushBack TensorListPopBack TensorListConcatV2
    TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3
    TensorArraySizeV3 TensorArrayCloseV3 TensorArrayConcatV3 TensorArraySplitV3
    CudnnRNN CudnnRNNV2 CudnnRNNV3 CudnnRNNParamsSize CudnnRNNCanonicalToParams CudnnRNNCanonicalToParamsV2
    BlockLSTM BlockLSTMV2 LSTMBlockCell GRUBlockCell XlaConvV2 XlaDotV2 XlaGather XlaScatter XlaReduce
    XlaSharding XlaCallModule Qr Fft Ifft Rfft Irfft Fft2D Ifft2D Rfft2D Irfft2D ComplexAbs Complex Real
    Imag Angle Conj Bincount DenseBincount Histogram HistogramFixedWidth FakeQuantWithMinMaxVars
    FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVarsPerChannel QuantizeV2 Dequantize QuantizeAndDequantizeV2
    QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 Empty DeepCopy InplaceUpdate DataFormatDimMap
    DataFormatVecPermute BatchFunction Timestamp DeviceIndex GuaranteeConst OptionalFromValue OptionalNone
    OptionalHasValue OptionalGetValue ZerosLike SegmentProd Betainc Igamma Igammac Zeta Polygamma
    AddV2 ApproximateEqual Relu6Grad ReluGrad SigmoidGrad TanhGrad SoftplusGrad BiasAddGrad
    """
    )
    | SAVER_OPS
)


@dataclass
class _Graph:
    """One graph or function body: name -> (op, data inputs)."""

    where: str
    nodes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)


class _Bad(ValueError):
    pass




def fields(buf: Data) -> Iterator[tuple[int, int, int | Data]]:
    """(field number, wire type, value) of a protobuf message; raises _Bad if it does not parse."""
    pos = 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Bad(f"field number 0 at {pos}")
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = varint(buf, pos)
            if length > len(buf) - pos:
                raise _Bad(f"length {length} runs past the end at {pos}")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise _Bad("truncated fixed-width field")
            yield number, wire, 0
        else:
            raise _Bad(f"unsupported wire type {wire} at {pos}")


def _sub(buf: Data, number: int) -> Iterator[Data]:
    for num, wire, value in fields(buf):
        if num == number and wire == 2 and not isinstance(value, int):
            yield value


def _text(buf: Data) -> str:
    return bytes(buf).decode("utf-8", "replace")


def _is_message(buf: Data, limit: int = 8, cut: bool = False) -> bool:
    """Whether ``buf`` starts with ``limit`` well-formed fields; with ``cut`` (``buf`` ends where the
    head was cut off, not where the message ends) a field that runs past the end still counts."""
    try:
        for count, _ in enumerate(fields(buf)):
            if count >= limit:
                break
        return True
    except _Bad as exc:
        return cut and "past the end" in str(exc)
    except ValueError:  # a varint cut short
        return cut


def detect(head: bytes) -> bool:
    """SavedModel{1: schema version 1, 2: MetaGraphDef} (ONNX starts ir_version, producer_name);
    keras_metadata.pb: SavedMetadata{1: SavedObject}; the text format by its first field names."""
    stripped = head.lstrip()
    if stripped.startswith(_TEXT_STARTS):
        return True
    return _binary_saved_model(head) or _keras_metadata(head)


def _binary_saved_model(head: bytes) -> bool:
    pos = 0
    if head[:2] == b"\x08\x01":
        pos = 2
    if head[pos : pos + 1] != b"\x12":
        return False
    try:
        length, start = varint(head, pos + 1)
        inner = head[start : start + length]
        # MetaGraphDef starts with meta_info_def (1) or graph_def (2); MetaInfoDef with a version string,
        # an OpList or tags: an ONNX producer_name would have to start with a newline byte.
        if not inner or inner[0] not in (0x0A, 0x12):
            return False
        sub_length, sub_start = varint(inner, 1)
    except ValueError:
        return False
    sub = inner[sub_start : sub_start + sub_length]
    cut = sub_start + sub_length > len(inner)
    return bool(sub) and _is_message(sub, 3, cut=cut)


def _keras_metadata(head: bytes) -> bool:
    return head[:1] == b"\x0a" and b"_tf_keras" in head[:4096]


class _Scan:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.count = 0
        self.functions: set[str] = set()

    def add(self, rule_id: str, category: Category, message: str) -> None:
        self.count += 1
        if self.count <= _MAX_FINDINGS:
            severity = Severity.CRITICAL if category is Category.DANGEROUS else Severity.HIGH
            self.ctx.add(rule_id, category, severity, message)

    def graphs(self, data: Data) -> list[_Graph]:
        found: list[_Graph] = []
        for m, meta in enumerate(_sub(data, 2)):
            for graph_def in _sub(meta, 2):
                found.append(self.graph(graph_def, f"meta_graphs[{m}].graph_def"))
                for library in _sub(graph_def, 2):
                    for function in _sub(library, 1):
                        found.append(self.function(function, m))
        return found

    def graph(self, buf: Data, where: str) -> _Graph:
        graph = _Graph(where)
        for node in _sub(buf, 1):
            self.node(node, graph)
        return graph

    def function(self, buf: Data, meta: int) -> _Graph:
        name = "?"
        for signature in _sub(buf, 1):
            for raw in _sub(signature, 1):
                name = _text(raw)
        self.functions.add(name)
        graph = _Graph(f"meta_graphs[{meta}] function {name!r}")
        for node in _sub(buf, 3):
            self.node(node, graph)
        return graph

    def node(self, buf: Data, graph: _Graph) -> None:
        name, op, inputs = "", "", []
        for num, wire, value in fields(buf):
            if wire != 2 or isinstance(value, int):
                continue
            if num == 1:
                name = _text(value)
            elif num == 2:
                op = _text(value)
            elif num == 3:
                text = _text(value)
                if not text.startswith("^"):
                    inputs.append(text.split(":", 1)[0])
        graph.nodes[name] = (op, inputs)

    def constant(self, graph: _Graph, name: str, depth: int = 0) -> bool:
        """Whether a node's value is built from constants only (not fed by the loader)."""
        if depth > _MAX_DEPTH or name not in graph.nodes:
            return False  # a placeholder outside the table, or a function argument
        op, inputs = graph.nodes[name]
        if op == "Const":
            return True
        if op in _PATH_PASSTHROUGH:
            return bool(inputs) and all(self.constant(graph, i, depth + 1) for i in inputs)
        return False

    def judge(self, graphs: list[_Graph]) -> None:
        seen: set[tuple[str, str]] = set()
        for graph in graphs:
            for name, (op, inputs) in graph.nodes.items():
                if op in SAVER_OPS:
                    if inputs and self.constant(graph, inputs[0]):
                        self.add(
                            "saved-model.dangerous-op",
                            Category.DANGEROUS,
                            f"{op} {name!r} in {graph.where} uses a checkpoint path fixed by the graph",
                        )
                    continue
                if (op, graph.where) in seen or op in ALLOWED_OPS or op in self.functions:
                    continue
                seen.add((op, graph.where))
                if op in DANGEROUS_OPS:
                    self.add(
                        "saved-model.dangerous-op",
                        Category.DANGEROUS,
                        f"op {op!r} ({name!r}) in {graph.where} reads or writes files, runs Python or uses the network",
                    )
                else:
                    self.add(
                        "saved-model.unknown-op",
                        Category.UNKNOWN,
                        f"op {op!r} ({name!r}) in {graph.where} is not on the SavedModel op allowlist",
                    )


def scan(data: Data, ctx: ScanContext) -> None:
    head = bytes(data[:64]).lstrip()
    if head.startswith(_TEXT_STARTS):
        ctx.format = "saved-model-text"
        ctx.add(
            "saved-model.text-format",
            Category.UNKNOWN,
            Severity.HIGH,
            "text-format SavedModel (saved_model.pbtxt) is not parsed: convert it to saved_model.pb",
        )
        return
    walker = _Scan(ctx)
    try:
        if not _binary_saved_model(bytes(data[:4096])):
            ctx.format = "keras-metadata"
            _keras_metadata_configs(data, ctx)
            return
        graphs = walker.graphs(data)
        if not any(graph.nodes for graph in graphs):
            ctx.add("saved-model.malformed", Category.MALFORMED, Severity.MEDIUM, "SavedModel without any graph node")
        walker.judge(graphs)
        _reference_variables(ctx)
    except (ValueError, RecursionError) as exc:  # _Bad, or a varint cut short
        ctx.add("saved-model.malformed", Category.MALFORMED, Severity.MEDIUM, f"SavedModel protobuf: {exc}")
    if walker.count > _MAX_FINDINGS:
        ctx.add(
            "saved-model.unknown-op",
            Category.UNKNOWN,
            Severity.HIGH,
            f"{walker.count - _MAX_FINDINGS} more op findings not listed",
        )


def _keras_metadata_configs(data: Data, ctx: ScanContext) -> None:
    """keras_metadata.pb: SavedMetadata{1: SavedObject{3: node_path, 4: identifier, 5: metadata JSON}}."""
    from modelgate.scan import keras_config

    for index, node in enumerate(_sub(data, 1)):
        path, metadata = f"nodes[{index}]", None
        for num, wire, value in fields(node):
            if wire == 2 and not isinstance(value, int):
                if num == 3:
                    path = _text(value)
                elif num == 5:
                    metadata = bytes(value)
        if metadata is None:
            continue
        try:
            config = json.loads(metadata)
        except (ValueError, RecursionError):
            ctx.add("keras.malformed", Category.MALFORMED, Severity.MEDIUM, f"keras_metadata {path}: not JSON")
            continue
        keras_config.check(config, ctx, root=path)


_VARIABLES = re.compile(r"^variables/variables\.(index|data-\d{5}-of-\d{5})$")


def _reference_variables(ctx: ScanContext) -> None:
    """The files TensorFlow reads beside saved_model.pb as tensor data, not code: the checkpoint's
    index (an SSTable of tensor entries) and its data shards, and the fingerprint."""
    if ctx.member is not None:
        return
    folder = (Path(ctx.root) / ctx.file).parent
    base = Path(ctx.file).parent
    if not (folder / "variables").is_dir():
        names = []
    else:
        names = [f"variables/{entry.name}" for entry in (folder / "variables").iterdir() if entry.is_file()]
    for name in names:
        if _VARIABLES.match(name):
            ctx.references.append(((base / name).as_posix(), "saved-model-variables"))
    if (folder / "fingerprint.pb").is_file():
        ctx.references.append(((base / "fingerprint.pb").as_posix(), "saved-model-fingerprint"))
