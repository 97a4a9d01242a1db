"""The scanner against an oracle: CPython's unpicklers with a recording find_class.

The differential test holds the scanner's view of generated pickles equal to what the
C and the pure-Python unpickler resolve; the bounded fuzzer (a few thousand mutated
pickles, torch zips, safetensors files and zips) holds it to its invariant: it never
raises, and nothing it calls safe reaches a global off the allowlist in any reading.
The long run is bench/fuzz_scan.py (docs/benchmarks.md).
"""

from __future__ import annotations

import random

from modelgate.scan.pickle_scan import walk
from tests.helpers import pickle_fuzz


def test_scanner_sees_every_global_the_unpicklers_resolve() -> None:
    rng = random.Random(1234)
    dangerous = 0
    for _ in range(400):
        data = pickle_fuzz.generated_pickle(rng)
        result = walk(data)
        assert result.ok, result.error
        seen = pickle_fuzz.recorded_globals(data)
        assert seen["c-bytesio"] == seen["c-peek"] == seen["python"]
        expected = {pickle_fuzz.mapped(m, n) for m, n in seen["c-bytesio"]}
        assert set(result.globals) == expected
        outcome = pickle_fuzz.check(data, "pkl")
        if any(not pickle_fuzz.allowlisted(m, n) for m, n in seen["c-bytesio"]):
            dangerous += 1
            assert outcome.verdict == "unsafe"
        assert not outcome.escaped
    assert dangerous > 50  # the generator really produces the class it tests


def test_bounded_fuzz_never_crashes_and_never_calls_an_escape_safe() -> None:
    rng = random.Random(20261202)
    verdicts: dict[str, int] = {}
    for _ in range(2500):
        kind, data = pickle_fuzz.fuzz_input(rng)
        outcome = pickle_fuzz.check(data, kind)
        verdicts[outcome.verdict] = verdicts.get(outcome.verdict, 0) + 1
        assert not outcome.escaped, (kind, data[:200], outcome.escaped)
    assert verdicts.get("safe", 0) > 100 and verdicts.get("unsafe", 0) > 100  # both sides exercised
