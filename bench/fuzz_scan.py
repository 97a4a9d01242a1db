"""Long fuzz run of the serialization scanner (the bounded one is tests/test_scan_fuzz.py).

Generates N inputs (generated and mutated pickles, torch zips, safetensors files, zips),
scans each, and holds the scanner to its invariant: it never raises, it never takes
more than --hang-s on one input, and nothing it calls safe reaches a global off the
allowlist when CPython's unpicklers (C on a non-peekable and a peekable file, pure
Python) read it with a recording find_class. Prints one JSON summary line.

    .venv/bin/python bench/fuzz_scan.py --inputs 100000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import pickle_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang-s", type=float, default=5.0)
    parser.add_argument("--progress", type=int, default=10_000, help="print a progress line every N inputs")
    parser.add_argument("--save-dir", type=Path, help="write every crashing, hanging or escaping input here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts: dict[str, int] = {}
    crashes: list[str] = []
    hangs: list[tuple[str, float]] = []
    escapes: list[tuple[str, str]] = []
    slowest = slowest_total = 0.0
    start = time.perf_counter()
    for i in range(args.inputs):
        kind, data = pickle_fuzz.fuzz_input(rng)
        t0 = time.perf_counter()
        try:
            outcome = pickle_fuzz.check(data, kind)
        except Exception:  # noqa: BLE001 - a crash is what this run counts
            crashes.append(f"{kind}: {traceback.format_exc(limit=2)[-300:]}")
            _save(args.save_dir, f"crash-{i}.{kind}", data)
            continue
        took = outcome.scan_s  # the scanner's own time (the oracle re-reads safe inputs three ways)
        slowest = max(slowest, took)
        slowest_total = max(slowest_total, time.perf_counter() - t0)
        if took > args.hang_s:
            hangs.append((kind, took))
            _save(args.save_dir, f"hang-{i}.{kind}", data)
        key = f"{kind}:{outcome.verdict}"
        counts[key] = counts.get(key, 0) + 1
        if outcome.escaped:
            escapes.append((kind, repr(outcome.escaped[:3])))
            _save(args.save_dir, f"escape-{i}.{kind}", data)
        if args.progress and (i + 1) % args.progress == 0:
            print(f"fuzz: {i + 1} inputs, {len(crashes)} crashes, {len(escapes)} escapes", file=sys.stderr)
    summary = {
        "inputs": args.inputs,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 1),
        "crashes": len(crashes),
        "hangs_over_s": {"limit": args.hang_s, "count": len(hangs)},
        "slowest_scan_s": round(slowest, 3),
        "slowest_scan_plus_oracle_s": round(slowest_total, 3),
        "escapes": len(escapes),
        "verdicts": dict(sorted(counts.items())),
        "first_crashes": crashes[:3],
        "first_escapes": escapes[:3],
    }
    print(json.dumps(summary))
    return 1 if crashes or hangs or escapes else 0


def _save(folder: Path | None, name: str, data: bytes) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    raise SystemExit(main())
