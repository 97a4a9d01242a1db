"""The symbolic pickle walker: globals through every opcode path, robustness, stacked streams."""

from __future__ import annotations

import pickle
import random
import struct

import pytest

from modelgate.scan import Limits, scan_bytes
from modelgate.scan.allowlist import Verdict, classify
from modelgate.scan.pickle_scan import walk
from tests.helpers.scan_corpus import (
    PAYLOAD,
    PROTO2,
    PROTO4,
    REDUCE,
    STOP,
    TUPLE1,
    binunicode,
    global_op,
    reduce_call,
    short_binunicode,
)


def _rules(data: bytes) -> list[tuple[str, str | None]]:
    return [(f.rule_id, f.global_name) for f in scan_bytes(data, "x.pkl").findings]


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_is_safe_in_every_protocol(protocol: int) -> None:
    data = pickle.dumps(
        {"a": [1, 2.5, None, True], "b": ("x", b"\x00\xff"), "c": {1, 2}, "d": frozenset({3}), "e": -(2**70)},
        protocol=protocol,
    )
    report = scan_bytes(data, "x.pkl")
    assert report.format == "pickle"
    assert report.findings == []


@pytest.mark.parametrize("protocol", range(6))
def test_dangerous_global_in_every_protocol(protocol: int) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return eval, ("1",)

    assert ("pickle.dangerous-global", "builtins.eval") in _rules(pickle.dumps(Evil(), protocol=protocol))


def test_allowlist_decisions() -> None:
    assert classify("torch._utils", "_rebuild_tensor_v2") is Verdict.SAFE
    assert classify("numpy._core.multiarray", "_reconstruct") is Verdict.SAFE
    assert classify("_codecs", "encode") is Verdict.SAFE
    assert classify("os", "system") is Verdict.DANGEROUS
    assert classify("builtins", "getattr") is Verdict.DANGEROUS
    assert classify("torch", "load") is Verdict.DANGEROUS
    assert classify("builtins", "object.__subclasses__") is Verdict.DANGEROUS
    assert classify("torch.serialization", "os") is Verdict.UNKNOWN
    assert classify("__torch__.my", "Net") is Verdict.CODE
    assert classify("sklearn.linear_model", "Ridge") is Verdict.UNKNOWN


def test_stacked_pickles_are_all_scanned() -> None:
    data = pickle.dumps(1, protocol=2) + pickle.dumps("x", protocol=4) + reduce_call("os", "system", PAYLOAD)
    report = scan_bytes(data, "x.pkl")
    assert report.verdict == "unsafe"
    assert report.findings[0].offset == len(pickle.dumps(1, protocol=2)) + len(pickle.dumps("x", protocol=4)) + 2


def test_trailing_bytes_are_recorded_not_blocking() -> None:
    report = scan_bytes(pickle.dumps([1, 2], protocol=2) + b"\x00\x00garbage", "x.pkl")
    assert report.verdict == "safe"
    assert [f.rule_id for f in report.findings] == ["pickle.trailing-data"]


def test_stack_global_on_a_non_string_is_refused_as_malformed() -> None:
    # Both CPython unpicklers refuse STACK_GLOBAL on a non-str ("STACK_GLOBAL requires str"):
    # the stream cannot load, and a stream that cannot be read completely is blocking.
    data = PROTO4 + b"K\x01" + short_binunicode("system") + b"\x93" + STOP
    report = scan_bytes(data, "x.pkl")
    assert [f.rule_id for f in report.findings] == ["pickle.malformed"]
    assert report.verdict == "unsafe"


def test_stack_global_through_memoize_and_long_binget() -> None:
    data = (
        PROTO4
        + short_binunicode("subprocess")
        + b"\x94"
        + short_binunicode("run")
        + b"\x94"
        + b"0"
        + b"0"
        + b"j\x00\x00\x00\x00"
    )
    data += b"j\x01\x00\x00\x00\x93" + STOP
    assert ("pickle.dangerous-global", "subprocess.run") in _rules(data)


def test_inst_and_obj_opcodes_resolve_their_globals() -> None:
    inst = b"(S'id'\nios\nsystem\n."
    obj = PROTO2 + b"(" + global_op("subprocess", "getoutput") + binunicode("id") + b"o" + STOP
    assert ("pickle.dangerous-global", "os.system") in _rules(inst)
    assert ("pickle.dangerous-global", "subprocess.getoutput") in _rules(obj)


def test_call_on_a_computed_object_is_a_gadget_chain() -> None:
    data = PROTO2 + global_op("collections", "OrderedDict") + b")" + REDUCE + binunicode("x") + TUPLE1 + REDUCE + STOP
    assert ("pickle.computed-call", "the result of calling collections.OrderedDict") in _rules(data)


def test_build_on_a_class_is_attribute_injection() -> None:
    data = PROTO2 + global_op("collections", "OrderedDict") + b"}" + b"b" + STOP
    assert _rules(data)[0][0] == "pickle.build-on-global"


def test_nested_pickle_through_codecs_encode_is_scanned() -> None:
    inner = reduce_call("os", "system", PAYLOAD).decode("latin-1")
    data = (
        PROTO2
        + global_op("pickle", "loads")
        + global_op("_codecs", "encode")
        + binunicode(inner)
        + binunicode("latin1")
        + b"\x86"
        + REDUCE
        + TUPLE1
        + REDUCE
        + STOP
    )
    report = scan_bytes(data, "x.pkl")
    nested = [f for f in report.findings if f.global_name == "os.system"]
    assert nested and nested[0].member is not None and nested[0].member.startswith("pickle@")


def test_nested_pickles_stop_at_the_depth_limit() -> None:
    data = reduce_call("os", "system", PAYLOAD)
    for _ in range(6):
        data = (
            PROTO2 + global_op("pickle", "loads") + b"B" + struct.pack("<I", len(data)) + data + TUPLE1 + REDUCE + STOP
        )
    report = scan_bytes(data, "x.pkl", limits=Limits(max_depth=2))
    assert any(f.rule_id == "archive.depth-limit" for f in report.findings)
    assert not any(f.global_name == "os.system" for f in report.findings)
    deep = scan_bytes(data, "x.pkl", limits=Limits(max_depth=8))
    assert any(f.global_name == "os.system" and f.member and f.member.count("pickle@") == 6 for f in deep.findings)


def test_fallback_budget_is_a_limit_finding() -> None:
    # The C unpickler refuses " 1.5" as a FLOAT, the pure-Python one (joblib) reads it: the rest of
    # the stream is read by the Python tracer, whose opcode budget is max_pickle_ops.
    data = PROTO2 + b"F 1.5\n0" + b"N0" * 500 + reduce_call("os", "system", PAYLOAD)
    report = scan_bytes(data, "x.pkl", limits=Limits(max_pickle_ops=100))
    assert [f.rule_id for f in report.findings] == ["pickle.op-limit"]
    assert report.verdict == "unsafe"
    full = scan_bytes(data, "x.pkl")
    assert ("pickle.dangerous-global", "os.system") in [(f.rule_id, f.global_name) for f in full.findings]


@pytest.mark.parametrize(
    "data",
    [
        PROTO2 + b"X\xff\xff\xff\x7f",  # string longer than the stream
        PROTO2 + b"h\x05.",  # memo key never stored
        PROTO2 + b"R.",  # stack underflow
        PROTO2 + b"\xff",  # invalid opcode
        PROTO2 + b"\x80\x09.",  # unsupported protocol
        PROTO2 + b"(t" * 3 + b"e.",  # APPENDS without a list
        PROTO2 + b"\x95\xff\xff\xff\xff\xff\xff\xff\x7f",  # frame past the end
    ],
)
def test_malformed_streams_are_findings_with_an_offset(data: bytes) -> None:
    report = scan_bytes(data, "x.pkl")
    malformed = [f for f in report.findings if f.rule_id == "pickle.malformed"]
    assert malformed and malformed[0].offset is not None


def test_random_bytes_never_raise() -> None:
    rng = random.Random(7)
    for _ in range(300):
        blob = bytes([0x80, rng.randrange(6)]) + bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        result = walk(blob)
        assert result.ok or result.error


def test_protocol0_text_that_is_not_a_pickle_is_text() -> None:
    report = scan_bytes(b"convert these weights\nplease\n", "notes.txt")
    assert report.format == "text"
    assert report.findings == []
