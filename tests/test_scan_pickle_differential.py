"""Pickles that loaders read differently from a re-implemented parser: each proven live, each blocked.

Every malicious case is loaded first with the real loader it targets, in a child process
(tests/helpers/live.py): the payload must have run. Only then is the scanner asked, and it must
block it with a reason. Benign neighbours load cleanly and stay safe.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from modelgate.scan import scan_bytes, scan_path
from tests.helpers import pickle_attacks as attacks
from tests.helpers.live import loads_cleanly, runs_payload


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rules(data: bytes, name: str = "x.pkl") -> set[str]:
    return {f.rule_id for f in scan_bytes(data, name).findings}


FRAME_CASES = {
    "get-line-across-frames": (attacks.frame_crossing_get, attacks.LOAD_BYTESIO),
    "counted-string-across-frames": (attacks.frame_crossing_binunicode, "pickle-loads"),
    "stop-before-frame-end": (attacks.stop_inside_frame, attacks.LOAD_TWICE),
}


@pytest.mark.parametrize("case", sorted(FRAME_CASES))
def test_frames_the_loaders_read_differently_are_blocked(case: str, tmp_path: Path) -> None:
    build, loader = FRAME_CASES[case]
    data = build()
    assert runs_payload(_write(tmp_path, "m.pkl", data), loader)
    report = scan_bytes(data, "m.pkl")
    assert report.verdict == "unsafe"
    assert "pickle.ambiguous-frames" in {f.rule_id for f in report.findings}


def test_frame_crossing_inside_a_torch_checkpoint_is_blocked(tmp_path: Path) -> None:
    # torch.load reads data.pkl through io.BytesIO: the discarding reader, which resolves os.system.
    data = attacks.torch_zip(attacks.frame_crossing_get())
    path = _write(tmp_path, "model.pt", data)
    assert runs_payload(path, "torch")
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.rule_id == "pickle.ambiguous-frames" and f.member == "archive/data.pkl" for f in report.findings)


def test_nested_frame_is_blocked() -> None:
    assert "pickle.ambiguous-frames" in _rules(attacks.nested_frame())


NUMBER_LINES = [b"I0x10", b"I010", b"I1_0", b"I+7", b"I 5", b"L0x10L", b"L1_000", b"I1\x00junk", b"F1.5\x00x"]


@pytest.mark.parametrize("line", NUMBER_LINES, ids=lambda line: repr(line))
def test_numbers_only_the_c_unpickler_reads_do_not_hide_a_payload(line: bytes, tmp_path: Path) -> None:
    data = attacks.c_number_prefix(line)
    assert runs_payload(_write(tmp_path, "m.pkl", data), "pickle")
    report = scan_bytes(data, "m.pkl")
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" for f in report.findings)


@pytest.mark.parametrize(("put", "get"), [(b"1_0", b"1_0"), (b" 10", b"10 "), (b"+3", b"3")])
def test_memo_indices_parsed_like_the_unpickler(put: bytes, get: bytes, tmp_path: Path) -> None:
    data = attacks.c_memo_line(put, get)
    assert runs_payload(_write(tmp_path, "m.pkl", data), "pickle")
    assert any(f.global_name == "os.system" for f in scan_bytes(data, "m.pkl").findings)


def test_number_trick_as_the_data_pkl_of_a_torch_zip(tmp_path: Path) -> None:
    data = attacks.torch_zip(attacks.c_number_prefix(b"I0x10"))
    path = _write(tmp_path, "model.pt", data)
    assert runs_payload(path, "torch")
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" and f.member == "archive/data.pkl" for f in report.findings)


def test_a_stream_only_the_python_unpickler_reads_is_blocked(tmp_path: Path) -> None:
    data = attacks.python_only_float()
    assert runs_payload(_write(tmp_path, "m.pkl", data), "pickle-python")
    rules = scan_bytes(data, "m.pkl").findings
    assert any(f.global_name == "os.system" for f in rules)
    assert any(f.rule_id == "pickle.malformed" for f in rules)


def test_truncated_frame_that_joblib_executes_is_blocked(tmp_path: Path) -> None:
    data = attacks.truncated_frame()
    path = _write(tmp_path, "m.joblib", data)
    assert runs_payload(path, "pickle-python")
    assert runs_payload(path, "joblib")
    report = scan_bytes(data, "m.joblib")
    assert report.verdict == "unsafe"
    rules = {f.rule_id for f in report.findings}
    assert "pickle.dangerous-global" in rules
    assert rules & {"pickle.malformed", "pickle.ambiguous-frames"}  # the frame runs past the data


def test_payload_behind_millions_of_no_op_opcodes_is_found(tmp_path: Path) -> None:
    data = attacks.long_noop_prefix(3_000_000)  # 6 M opcodes before the call
    assert runs_payload(_write(tmp_path, "m.pkl", data), "pickle")
    report = scan_bytes(data, "m.pkl")
    assert [(f.rule_id, f.global_name) for f in report.findings] == [("pickle.dangerous-global", "os.system")]
    assert report.findings[0].offset == 2 + 6_000_000  # the GLOBAL opcode, exactly


def test_any_stream_the_scanner_cannot_finish_is_blocking() -> None:
    for data in (b"\x80\x02K\x01", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K", b"\x80\x02\xff."):
        report = scan_bytes(data, "x.pkl")
        assert report.verdict == "unsafe", data


# -- neighbours that must stay safe ---------------------------------------------------------------
@pytest.mark.parametrize("protocol", [4, 5])
def test_framed_pickles_from_pickle_itself_are_safe(protocol: int, tmp_path: Path) -> None:
    value = {"w": [float(i) for i in range(20_000)], "s": ["x" * 70_000, b"\x00" * 200_000], "n": None}
    data = pickle.dumps(value, protocol=protocol)
    assert loads_cleanly(_write(tmp_path, "ok.pkl", data), attacks.LOAD_BYTESIO)
    report = scan_bytes(data, "ok.pkl")
    assert report.verdict == "safe", report.findings


def test_stacked_framed_pickles_are_safe() -> None:
    data = pickle.dumps([1, 2, 3], protocol=4) + pickle.dumps({"a": "b" * 100_000}, protocol=5)
    assert scan_bytes(data, "ok.pkl").verdict == "safe"


def test_numpy_arrays_pickled_at_every_protocol_are_safe(tmp_path: Path) -> None:
    arrays = [np.arange(10_000, dtype=np.float32), np.array(["ab", "c"]), np.zeros((3, 3), dtype="V8")]
    for protocol in range(2, 6):
        data = pickle.dumps(arrays, protocol=protocol)
        assert loads_cleanly(_write(tmp_path, f"a{protocol}.pkl", data), "pickle")
        assert scan_bytes(data, "a.pkl").verdict == "safe", protocol


def test_joblib_arrays_of_every_dtype_are_stepped_over_exactly(tmp_path: Path) -> None:
    import joblib

    value = {
        "f": np.arange(1000, dtype=np.float64),
        "s": np.array([b"abc", b"de"]),
        "u": np.array(["unicode", "x"]),
        "v": np.zeros(4, dtype=[("a", "<i4"), ("b", "<f8")]),
        "m": np.array(["2020-01-01"], dtype="datetime64[ns]"),
        "c": np.ones((3, 4), dtype=np.complex128, order="F"),
    }
    path = tmp_path / "ok.joblib"
    joblib.dump(value, path)
    assert loads_cleanly(path, "joblib")
    report = scan_path(path)
    assert report.verdict == "safe", report.findings
    assert report.files[0].format == "joblib"


@pytest.mark.parametrize("build", [attacks.joblib_elsize_lie, attacks.joblib_object_flag_lie])
def test_joblib_array_sizes_are_numpy_s_not_the_state_s(build: object, tmp_path: Path) -> None:
    data = build(tmp_path / "base.joblib")  # type: ignore[operator]
    path = _write(tmp_path, "m.joblib", data)
    assert runs_payload(path, "joblib")
    report = scan_path(path)
    assert report.verdict == "unsafe"
    assert any(f.global_name == "os.system" for f in report.findings), report.findings


@pytest.mark.parametrize(
    "data",
    [
        b"K\x01r\xff\xff\xff\x7f" + attacks.os_system_call() + b".",  # LONG_BINPUT 2**31-1
        b"K\x01p99999999999\n0" + attacks.os_system_call() + b".",  # text PUT
        b"K\x01p 1_000_000_000\n0" + attacks.os_system_call() + b".",  # as PyLong_FromString reads it
    ],
)
def test_memo_bomb_is_blocked_without_letting_the_c_unpickler_allocate(data: bytes) -> None:
    # The C unpickler grows its memo array to twice the index and zeroes it (16 bytes a slot): the
    # scanner must not run it on such a stream (this test would exhaust memory), and blocks it.
    report = scan_bytes(data, "m.pkl")
    assert report.verdict == "unsafe"
    rules = {(f.rule_id, f.global_name) for f in report.findings}
    assert ("pickle.memo-bomb", None) in rules
    assert ("pickle.dangerous-global", "os.system") in rules  # the Python reading still names the call


def test_big_but_plausible_memo_indices_of_real_pickles_stay_safe() -> None:
    shared = [(f"a{i}",) for i in range(300_000)]  # LONG_BINPUT indices past 2**16
    data = pickle.dumps([shared, shared], protocol=2)
    assert b"r" in data
    assert scan_bytes(data, "ok.pkl").verdict == "safe"


def test_shared_references_do_not_expand_exponentially() -> None:
    # [x, x] of [y, y] of ... 60 levels: 121 objects in the pickle, 2**60 paths through them.
    value: list[object] = []
    for _ in range(60):
        value = [value, value]
    state_holder = pickle.dumps(value, protocol=4)
    build = b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94" + state_holder[2:-1] + b"b."
    for data in (state_holder, build):
        report = scan_bytes(data, "shared.pkl")  # as the STOP value, then as a BUILD state
        assert report.verdict in ("safe", "unsafe")
    assert scan_bytes(state_holder, "shared.pkl").verdict == "safe"
