"""TensorFlow SavedModel (``saved_model.pb``, ``keras_metadata.pb``): every op, judged by allowlist.

A SavedModel is a graph that TensorFlow runs: ops such as ``WriteFile``, ``ReadFile``,
``MatchingFiles``, ``PyFunc`` or ``PrintV2`` to a file touch the machine when a signature
(or the restore function) is called. The protobuf is walked by hand (no TensorFlow):
SavedModel{2: meta_graphs} > MetaGraphDef{2: graph_def, 3: saver_def, 6: asset_file_def,
7: object_graph_def} > GraphDef{1: node, 2: library} > NodeDef{2: op, 3: input, 5: attr};
FunctionDefLibrary{1: function} > FunctionDef{1: signature, 3: node_def}. Every op of the main
graph and of every library function is collected: file, system, Python and network ops are
``dangerous``; ops outside the allowlist are ``unknown``; a call of a library function is
allowed (the function is checked itself).

Ops that open a path they take as an input (``PATH_OPS``) are allowed only where that path is
the one the loader feeds, followed through the graph and across function calls: the saver ops
(``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``) must take the checkpoint prefix
(``saver_def.filename_tensor_name``, a Placeholder) plus constant suffixes without ``..``; a
text-file table initializer must take an asset path exactly (an ``asset_file_def`` Placeholder
of the main graph, or an argument TensorFlow 2 binds to a ``SavedAsset``), and every asset's
file name must be a plain relative name of a file in ``assets/`` (TensorFlow joins it to the
assets folder, so an absolute name or ``..`` reads any file). A path fixed by the graph, one the
caller of a signature passes, one read from a variable (the checkpoint chooses it) or computed
by any other op is ``dangerous``. ``keras_metadata.pb`` carries each layer's Keras config as
JSON: it goes through the Keras config check (Lambda layers, custom objects). ``fingerprint.pb``
beside the graph is parsed strictly as a FingerprintDef; the variables are a tensor bundle
(``tf_bundle``).
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelgate.scan.base import Data, ScanContext
from modelgate.scan.findings import Category, Severity
from modelgate.scan.formats import tf_bundle
from modelgate.scan.protobuf_wire import varint

NAME = "saved-model"
_TEXT_STARTS = (b"saved_model_schema_version", b"meta_graphs")
_MAX_DEPTH = 64
_MAX_FINDINGS = 100
_MAX_VALUES = 64  # distinct path values followed per tensor (more: not followed, so not allowed)
_MAX_FINGERPRINT = 4096


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
    SummaryWriter CloseSummaryWriter
    """
)
# Ops that open the path given as one of their inputs: op -> (input positions, the loader path
# they may take). Allowed only when that path is exactly what the loader feeds (module docstring).
PATH_OPS: dict[str, tuple[tuple[int, ...], str]] = {
    "SaveV2": ((0,), "checkpoint"),
    "RestoreV2": ((0,), "checkpoint"),
    "MergeV2Checkpoints": ((0, 1), "checkpoint"),
    "InitializeTableFromTextFileV2": ((1,), "asset"),
    "InitializeTableFromTextFile": ((1,), "asset"),
}
SAVER_OPS = _words("SaveV2 RestoreV2 MergeV2Checkpoints")
ALLOWED_OPS = (
    _words(
        """
    Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp StopGradient PreventGradient Snapshot
    VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp ResourceGather
    ResourceGatherNd ResourceScatterAdd ResourceScatterUpdate VariableV2 Variable Assign AssignAdd AssignSub
    VarIsInitializedOp DestroyResourceOp DisableCopyOnRead Switch Merge Enter Exit NextIteration LoopCond ControlTrigger
    StatefulPartitionedCall PartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
    SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename ShardedFilespec StringJoin StaticRegexFullMatch
    Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv TruncateMod Mod Neg
    Abs Sign Square Sqrt Rsqrt Exp Expm1 Log Log1p Pow Maximum Minimum Reciprocal Inv SquaredDifference
    Sin Cos Tan Asin Acos Atan Atan2 Sinh Cosh Tanh Asinh Acosh Atanh Erf Erfc Erfinv Lgamma Digamma
    Floor Ceil Round Rint IsNan IsInf IsFinite Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd
    LogicalOr LogicalNot Select SelectV2 ClipByValue Cast Bitcast BitwiseAnd BitwiseOr BitwiseXor Invert
    LeftShift RightShift MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum SparseMatMul
    Sum Mean Prod Max Min Any All ArgMax ArgMin Cumsum Cumprod CumulativeLogsumexp SegmentSum SegmentMean
    SegmentMax SegmentMin UnsortedSegmentSum UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
    Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Sigmoid Softmax LogSoftmax BiasAdd BiasAddV1
    Conv2D Conv3D Conv2DBackpropInput Conv3DBackpropInputV2 DepthwiseConv2dNative
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
    XlaSharding Qr FFT IFFT RFFT IRFFT FFT2D IFFT2D RFFT2D IRFFT2D FFT3D IFFT3D RFFT3D IRFFT3D ComplexAbs Complex Real
    Imag Angle Conj Bincount DenseBincount HistogramFixedWidth FakeQuantWithMinMaxVars
    FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVarsPerChannel QuantizeV2 Dequantize QuantizeAndDequantizeV2
    QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 Empty DeepCopy InplaceUpdate DataFormatDimMap
    DataFormatVecPermute BatchFunction Timestamp DeviceIndex GuaranteeConst OptionalFromValue OptionalNone
    OptionalHasValue OptionalGetValue ZerosLike SegmentProd Betainc Igamma Igammac Zeta Polygamma
    AddV2 ApproximateEqual Relu6Grad ReluGrad SigmoidGrad TanhGrad SoftplusGrad BiasAddGrad
    """
    )
    | SAVER_OPS
)


_CALLS = _words("PartitionedCall StatefulPartitionedCall")
_BRANCHES = _words("If StatelessIf Case StatelessCase")  # input 0 picks the branch; the rest are its arguments
_LOOPS = _words("While StatelessWhile")  # arguments: the inputs, then the body's own outputs
_PASS_ALL = _words("Identity IdentityN Pack")  # the value is (one of) the inputs
_PASS_FIRST = _words("ShardedFilename")  # the path is input 0, with a shard number appended
_PASS_BRANCHES = _words("Select SelectV2")  # input 0 is the condition

# A path value: where it starts, and the constant text appended to it (the whole text for a constant).
Value = tuple[str, bytes]
_OTHER: frozenset[Value] = frozenset({("other", b"")})


@dataclass
class _Node:
    op: str
    inputs: list[str] = field(default_factory=list)  # data inputs: node (or argument) names
    calls: list[tuple[str, str]] = field(default_factory=list)  # (attribute, function name)
    strings: tuple[bytes, ...] | None = None  # a string Const's values
    separator: bytes = b""  # StringJoin's


@dataclass
class _Graph:
    """One graph or function body: name -> node; a function's arguments by position."""

    where: str
    name: str | None = None
    args: list[str] = field(default_factory=list)
    nodes: dict[str, _Node] = field(default_factory=dict)


@dataclass
class _Meta:
    """One MetaGraphDef: its graphs (main first) and what the loader feeds into them."""

    index: int
    graphs: list[_Graph] = field(default_factory=list)
    saver_filename: str | None = None
    assets: dict[str, int] = field(default_factory=dict)  # main-graph tensor -> asset_file_def index
    asset_files: list[str] = field(default_factory=list)
    objects: list[tuple[str, int | str | None]] = field(default_factory=list)  # SavedObject kind, detail
    bound: dict[str, list[int]] = field(default_factory=dict)  # top-level function -> captured objects


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


def _ints(buf: Data, number: int) -> list[int]:
    """A repeated integer field, packed or not."""
    found: list[int] = []
    for num, wire, value in fields(buf):
        if num != number:
            continue
        if isinstance(value, int):
            found.append(value)
        elif wire == 2:
            pos = 0
            while pos < len(value):
                item, pos = varint(value, pos)
                found.append(item)
    return found


def _int(buf: Data, number: int) -> int | None:
    values = [value for num, wire, value in fields(buf) if num == number and wire == 0 and isinstance(value, int)]
    return values[-1] if values else None


def _text(buf: Data) -> str:
    return bytes(buf).decode("utf-8", "replace")


def _one_text(buf: Data, number: int) -> str:
    """A singular string field: the last occurrence wins, as protobuf parses it."""
    values = [_text(value) for value in _sub(buf, number)]
    return values[-1] if values else ""


def _has(buf: Data, number: int) -> bool:
    return any(num == number for num, _wire, _value in fields(buf))


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


# --------------------------------------------------------------------------- reading the protobuf


def _tensor_name(name: str) -> str:
    """'node:0' (a graph tensor) or 'node:output:0' (inside a function) -> 'node'."""
    return name.split(":", 1)[0]


def _attr_functions(value: Data, depth: int = 0) -> Iterator[str]:
    """Function names in an AttrValue: func (10) and list.func (1 > 9), and the attrs of those (nested)."""
    if depth > 8:
        return
    for num, wire, item in fields(value):
        if wire != 2 or isinstance(item, int):
            continue
        if num == 10:
            yield from _name_attr_list(item, depth)
        elif num == 1:
            for func in _sub(item, 9):
                yield from _name_attr_list(func, depth)


def _name_attr_list(buf: Data, depth: int) -> Iterator[str]:
    """NameAttrList{1: name, 2: attr map<string, AttrValue>}."""
    yield _one_text(buf, 1)
    for entry in _sub(buf, 2):
        for attr in _sub(entry, 2):
            yield from _attr_functions(attr, depth + 1)


def _string_values(attr: Data) -> tuple[bytes, ...] | None:
    """A string Const's values: AttrValue{8: TensorProto{1: dtype 7, 8: string_val}} (None otherwise).
    A repeated tensor field merges (protobuf): the last dtype given, every string_val."""
    dtype: int | None = None
    values: list[bytes] = []
    for tensor in _sub(attr, 8):
        dtype = _int(tensor, 1) if _has(tensor, 1) else dtype
        if _has(tensor, 4):  # strings in tensor_content (TensorFlow decodes those too): not read here
            return None
        values.extend(bytes(v) for v in _sub(tensor, 8))
    if dtype != 7:
        return None
    return tuple(values) or (b"",)


def _node(buf: Data) -> tuple[str, _Node]:
    """NodeDef{1: name, 2: op, 3: input, 5: attr map}."""
    name, node = "", _Node("")
    for num, wire, value in fields(buf):
        if wire != 2 or isinstance(value, int):
            continue
        if num == 1:
            name = _text(value)
        elif num == 2:
            node.op = _text(value)
        elif num == 3:
            text = _text(value)
            if not text.startswith("^"):
                node.inputs.append(_tensor_name(text))
        elif num == 5:
            _attr(node, value)
    return name, node


def _attr(node: _Node, entry: Data) -> None:
    key = _one_text(entry, 1)
    for value in _sub(entry, 2):
        node.calls.extend((key, function) for function in _attr_functions(value))
        if key == "value" and node.op == "Const":
            node.strings = _string_values(value)
        elif key == "separator":
            node.separator = next((bytes(s) for s in _sub(value, 2)), b"")


def _graph(buf: Data, where: str) -> _Graph:
    graph = _Graph(where)
    for raw in _sub(buf, 1):
        name, node = _node(raw)
        graph.nodes[name] = node
    return graph


def _function(buf: Data, meta: int) -> _Graph:
    """FunctionDef{1: OpDef{1: name, 2: input_arg{1: name}}, 3: node_def}."""
    graph = _Graph("")
    for signature in _sub(buf, 1):  # a repeated signature merges: the last name, every argument
        graph.name = _one_text(signature, 1) if _has(signature, 1) else graph.name
        graph.args.extend(_one_text(arg, 1) for arg in _sub(signature, 2))
    graph.name = graph.name or "?"
    graph.where = f"meta_graphs[{meta}] function {graph.name!r}"
    for raw in _sub(buf, 3):
        name, node = _node(raw)
        graph.nodes[name] = node
    return graph


_KINDS = {4: "user_object", 5: "asset", 6: "function", 7: "variable", 8: "bare_concrete_function",
          9: "constant", 10: "resource", 12: "captured_tensor"}  # fmt: skip


def _meta(buf: Data, index: int) -> _Meta:
    """The graphs of one MetaGraphDef (main first: a repeated graph_def merges into it, as protobuf
    merges a repeated message field) and the loader's feeds."""
    main = _Graph(f"meta_graphs[{index}].graph_def")
    meta = _Meta(index, [main])
    for num, wire, value in fields(buf):
        if wire != 2 or isinstance(value, int):
            continue
        if num == 2:
            main.nodes.update(_graph(value, main.where).nodes)
            for library in _sub(value, 2):
                meta.graphs.extend(_function(function, index) for function in _sub(library, 1))
        elif num == 3:
            if _has(value, 1):  # a repeated saver_def merges: the last filename given
                meta.saver_filename = _tensor_name(_one_text(value, 1)) or None
        elif num == 6:
            meta.asset_files.append(_one_text(value, 2))
            names = [_one_text(info, 1) for info in _sub(value, 1) if _has(info, 1)]
            if names:
                meta.assets[_tensor_name(names[-1])] = len(meta.asset_files) - 1
        elif num == 7:
            _object_graph(value, meta)
    return meta


def _object_graph(buf: Data, meta: _Meta) -> None:
    """SavedObjectGraph{1: SavedObject, 2: map<name, SavedConcreteFunction{2: bound_inputs}>}."""
    for obj in _sub(buf, 1):
        kind: str = "?"
        detail: int | str | None = None
        for num, wire, value in fields(obj):
            if num in _KINDS and wire == 2 and not isinstance(value, int):
                kind = _KINDS[num]
                if num == 5:  # SavedAsset{1: asset_file_def_index}
                    detail = _int(value, 1) or 0
                elif num == 9:  # SavedConstant{1: operation}
                    detail = _tensor_name(_one_text(value, 1))
        meta.objects.append((kind, detail))
    for entry in _sub(buf, 2):
        name = _one_text(entry, 1)
        meta.bound[name] = [b for function in _sub(entry, 2) for b in _ints(function, 2)]


# --------------------------------------------------------------------------- where a path comes from


def _loader_path(value: Value, kind: str) -> bool:
    """A path the loader feeds: the checkpoint prefix with constant suffixes that climb no folder
    (``_temp/part``, ``.part``, a shard number), or an asset path as it is."""
    root, suffix = value
    if root != kind:
        return False
    if kind == "asset":
        return suffix == b""
    return b"\x00" not in suffix and b".." not in suffix.split(b"/")[1:]


def _describe(value: Value, kind: str) -> str:
    root, suffix = value
    if root == "const":
        return f"a path fixed by the graph ({suffix[:80]!r})"
    if root == "input":
        return "a path that whoever calls a signature passes in"
    if root == "other":
        return "a path computed by the graph, read from a variable (the checkpoint) or returned by a call"
    if root != kind:
        return f"the {root} path"
    return f"the {root} path with {suffix[:80]!r} appended"


class _Flow:
    """The values a string tensor can take, as far as they are paths: followed through pass-through
    and join ops, into functions from every call site, and for top-level functions from what the
    TensorFlow 2 loader binds to their captured arguments (object graph ``bound_inputs``)."""

    def __init__(self, meta: _Meta) -> None:
        self.meta = meta
        self.main = meta.graphs[0]
        self.functions: dict[str, list[_Graph]] = {}
        for graph in meta.graphs[1:]:
            self.functions.setdefault(graph.name or "?", []).append(graph)
        self.sites: dict[str, list[tuple[_Graph, _Node, int]]] = {}
        for graph in meta.graphs:
            for node in graph.nodes.values():
                self._sites(graph, node)
        self.memo: dict[tuple[int, str], frozenset[Value]] = {}

    def _sites(self, graph: _Graph, node: _Node) -> None:
        """Record where ``node`` passes arguments to a function: the position of argument 0 among its
        inputs, or -1 when they are not its inputs (a loop's later rounds, a dataset's elements)."""
        if node.op in self.functions:
            self.sites.setdefault(node.op, []).append((graph, node, 0))
        for attr, callee in node.calls:
            offsets = [-1]
            if node.op in _CALLS and attr == "f":
                offsets = [0]
            elif node.op in _BRANCHES and attr in ("then_branch", "else_branch", "branches"):
                offsets = [1]
            elif node.op in _LOOPS and attr in ("cond", "body"):
                offsets = [0, -1]
            self.sites.setdefault(callee, []).extend((graph, node, offset) for offset in offsets)

    def values(self, graph: _Graph, name: str, depth: int = 0) -> frozenset[Value]:
        key = (id(graph), name)
        if key in self.memo:
            return self.memo[key]
        if depth > _MAX_DEPTH:
            return _OTHER
        self.memo[key] = _OTHER  # a cycle (a loop's back edge) is not followed: it stays "other"
        found = self._values(graph, name, depth + 1) or _OTHER
        if len(found) > _MAX_VALUES:
            found = _OTHER
        self.memo[key] = found
        return found

    def _union(self, graph: _Graph, names: list[str], depth: int) -> frozenset[Value]:
        found: set[Value] = set()
        for name in names:
            found |= self.values(graph, name, depth)
        return frozenset(found)

    def _values(self, graph: _Graph, name: str, depth: int) -> frozenset[Value]:
        if graph is not self.main and name in graph.args and name not in graph.nodes:
            return self._argument(graph, graph.args.index(name), depth)
        node = graph.nodes.get(name)
        if node is None:
            return _OTHER
        if graph is self.main:
            fed = self._fed(name, node, depth)
            if fed is not None:
                return fed
        if node.op == "Const":
            return _OTHER if node.strings is None else frozenset(("const", s) for s in node.strings)
        if node.op in _PASS_ALL:
            return self._union(graph, node.inputs, depth)
        if node.op in _PASS_FIRST:
            return self._union(graph, node.inputs[:1], depth)
        if node.op in _PASS_BRANCHES:
            return self._union(graph, node.inputs[1:], depth)
        if node.op == "StringJoin":
            return self._join(graph, node, depth)
        return _OTHER

    def _fed(self, name: str, node: _Node, depth: int) -> frozenset[Value] | None:
        """What the loader or the caller feeds into a main-graph tensor (None: a plain op)."""
        if node.op == "Placeholder" and name in self.meta.assets:
            return frozenset({("asset", b"")})
        if node.op == "Placeholder" and name == self.meta.saver_filename:
            return frozenset({("checkpoint", b"")})
        if node.op in ("Placeholder", "PlaceholderWithDefault"):
            return frozenset({("input", b"")})
        if node.op == "ReadVariableOp":
            return self._variable(node, depth)
        return None

    def _variable(self, read: _Node, depth: int) -> frozenset[Value]:
        """A main-graph variable read: what the main graph assigns to it (TensorFlow 2 keeps each asset
        path in such a variable); anything else that touches the variable may set it."""
        handle = read.inputs[0] if read.inputs else ""
        if handle not in self.main.nodes or self.main.nodes[handle].op != "VarHandleOp":
            return _OTHER
        found: set[Value] = set()
        for node in self.main.nodes.values():
            if handle not in node.inputs or node.op in ("ReadVariableOp", "VarIsInitializedOp"):
                continue
            if node.op == "AssignVariableOp" and node.inputs.index(handle) == 0 and len(node.inputs) > 1:
                found |= self.values(self.main, node.inputs[1], depth)
            else:
                found |= _OTHER
        return frozenset(found) or _OTHER

    def _join(self, graph: _Graph, node: _Node, depth: int) -> frozenset[Value]:
        """StringJoin: the first input's start, with every later input (constants only) appended."""
        if not node.inputs:
            return _OTHER
        joined = set(self.values(graph, node.inputs[0], depth))
        for name in node.inputs[1:]:
            pieces = self.values(graph, name, depth)
            joined = {
                (root, suffix + node.separator + piece) if kind == "const" and root != "other" else ("other", b"")
                for (root, suffix), (kind, piece) in itertools.product(joined, pieces)
            }
            if len(joined) > _MAX_VALUES:
                return _OTHER
        return frozenset(joined)

    def _argument(self, function: _Graph, index: int, depth: int) -> frozenset[Value]:
        found: set[Value] = set()
        for caller, node, offset in self.sites.get(function.name or "?", []):
            if offset < 0 or offset + index >= len(node.inputs):
                found |= _OTHER
            else:
                found |= self.values(caller, node.inputs[offset + index], depth)
        if function.name in self.meta.bound:
            found |= self._capture(function, index, depth)
        return frozenset(found) or _OTHER  # neither called nor bound: nothing says what it gets

    def _capture(self, function: _Graph, index: int, depth: int) -> frozenset[Value]:
        """A top-level function's arguments: the caller's, then one per bound input (captures)."""
        bound = self.meta.bound[function.name or "?"]
        first = len(function.args) - len(bound)
        if first < 0:
            return _OTHER
        if index < first:
            return frozenset({("input", b"")})
        node = bound[index - first]
        kind, detail = self.meta.objects[node] if 0 <= node < len(self.meta.objects) else ("?", None)
        if kind == "asset" and isinstance(detail, int) and 0 <= detail < len(self.meta.asset_files):
            return frozenset({("asset", b"")})
        if kind == "constant" and isinstance(detail, str):
            return self.values(self.main, detail, depth)
        return _OTHER


# --------------------------------------------------------------------------- judging


class _Scan:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.count = 0

    def add(self, rule_id: str, category: Category, message: str) -> None:
        self.count += 1
        if self.count <= _MAX_FINDINGS:
            severity = Severity.CRITICAL if category is Category.DANGEROUS else Severity.HIGH
            self.ctx.add(rule_id, category, severity, message)

    def judge(self, meta: _Meta) -> None:
        flow = _Flow(meta)
        seen: set[tuple[str, str]] = set()
        for graph in meta.graphs:
            for name, node in graph.nodes.items():
                op = node.op
                if op in PATH_OPS:
                    self.path_op(flow, graph, name, node)
                    continue
                if (op, graph.where) in seen or op in ALLOWED_OPS or op in flow.functions:
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

    def path_op(self, flow: _Flow, graph: _Graph, name: str, node: _Node) -> None:
        positions, kind = PATH_OPS[node.op]
        for position in positions:
            if position >= len(node.inputs):
                values: frozenset[Value] = _OTHER
            else:
                values = flow.values(graph, node.inputs[position])
            bad = sorted(value for value in values if not _loader_path(value, kind))
            if bad:
                self.add(
                    "saved-model.dangerous-op",
                    Category.DANGEROUS,
                    f"{node.op} {name!r} in {graph.where} opens {_describe(bad[0], kind)}, "
                    f"not the {kind} path the loader feeds",
                )
                return

    def assets(self, meta: _Meta) -> None:
        """TensorFlow reads assets/<filename>: a name that leaves that folder reads any file."""
        folder = None if self.ctx.member is not None else (Path(self.ctx.root) / self.ctx.file).parent / "assets"
        for filename in meta.asset_files:
            parts = filename.replace("\\", "/").split("/")
            if not filename or os.path.isabs(filename) or "\x00" in filename or ".." in parts or ":" in parts[0]:
                self.add(
                    "saved-model.asset-escape",
                    Category.DANGEROUS,
                    f"asset file name {filename[:120]!r} in meta_graphs[{meta.index}] reads a file outside assets/",
                )
            elif folder is not None and not _regular_file(folder / filename):
                self.add(
                    "saved-model.asset-missing",
                    Category.MALFORMED,
                    f"asset {filename[:120]!r} in meta_graphs[{meta.index}] is not a file in assets/",
                )


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


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
        metas = [_meta(meta, index) for index, meta in enumerate(_sub(data, 2))]
        if not any(graph.nodes for meta in metas for graph in meta.graphs):
            ctx.add("saved-model.malformed", Category.MALFORMED, Severity.MEDIUM, "SavedModel without any graph node")
        for meta in metas:
            walker.judge(meta)
            walker.assets(meta)
        _check_fingerprint(ctx)
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


# FingerprintDef{1-5: uint64 hashes, 6: VersionDef, 7: uuid}
_FINGERPRINT = {1: (0, False), 2: (0, False), 3: (0, False), 4: (0, False), 5: (0, False), 6: (2, False), 7: (2, False)}


def _check_fingerprint(ctx: ScanContext) -> None:
    """fingerprint.pb beside the graph: a FingerprintDef to the last byte, then a reference (the
    loader reads it as hashes); anything else keeps the file unrecognized and is a finding here."""
    if ctx.member is not None:
        return
    path = (Path(ctx.root) / ctx.file).parent / "fingerprint.pb"
    if not _regular_file(path):
        return  # absent; a link or a special file is the driver's finding
    problem = _fingerprint_problem(path)
    if problem is None:
        ctx.references.append(((Path(ctx.file).parent / "fingerprint.pb").as_posix(), "saved-model-fingerprint"))
    else:
        ctx.add("saved-model.fingerprint", Category.MALFORMED, Severity.MEDIUM, f"fingerprint.pb: {problem}")


def _fingerprint_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FINGERPRINT + 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if len(data) > _MAX_FINGERPRINT:
        return f"larger than {_MAX_FINGERPRINT} bytes"
    try:
        found = tf_bundle.read_message(data, "FingerprintDef", _FINGERPRINT)
        for version in found.get(6, []):
            assert not isinstance(version, int)
            tf_bundle.read_message(version, "FingerprintDef version", tf_bundle.VERSION_DEF)
        for uuid in found.get(7, []):
            assert not isinstance(uuid, int)
            if len(uuid) > 64 or not bytes(uuid).isascii() or not bytes(uuid).decode().isprintable():
                return "uuid is not a short printable string"
    except tf_bundle.Bad as exc:
        return str(exc)
    return None
