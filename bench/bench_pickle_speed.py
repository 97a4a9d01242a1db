"""Pickle scan throughput on long streams: modelgate vs picklescan, same files, same run.

Each stream shape stresses a different part of a pickle reader: many small opcodes
without frames (protocol 2, how torch.save writes data.pkl), framed protocol-4/5
streams, protocol-0 text opcodes, memo traffic, deep nesting. Both tools run
in-process on the same bytes (picklescan in its own virtualenv, bench/setup_peers_scan.sh);
opcodes are counted once by modelgate's opcode index. ``pickle.loads`` of the same bytes (the
C unpickler building the real objects, no scan) is shown as the loader's own speed. Prints a
markdown table and one JSON line per stream with opcodes/s for both tools and the ratio.

    .venv/bin/python bench/bench_pickle_speed.py [--scale 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelgate.scan import pickle_ops  # noqa: E402
from modelgate.scan.pickle_scan import walk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-peers-scan" / "bin" / "python"
_PICKLESCAN = """
import io, sys, time, json
from picklescan.scanner import scan_pickle_bytes
data = open(sys.argv[1], 'rb').read()
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    result = scan_pickle_bytes(io.BytesIO(data), 'bench')
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "issues": result.issues_count, "globals": len(result.globals)}))
"""


def _shapes(scale: float) -> dict[str, Callable[[], bytes]]:
    n = max(1000, int(1_000_000 * scale))
    return {
        "ints, protocol 2 (unframed)": lambda: pickle.dumps(list(range(n * 4)), protocol=2),
        "floats+strings, protocol 4 (framed)": lambda: pickle.dumps(
            [float(i) for i in range(n)] + [f"s{i}" for i in range(n)], protocol=4
        ),
        "protocol 0 text": lambda: pickle.dumps([i * 7 for i in range(n)] + [str(i) for i in range(n // 2)], 0),
        "shared references (memo GETs)": lambda: pickle.dumps([("a", "b")] * (n * 2) + [[i] for i in range(n)], 2),
        "dicts, protocol 5": lambda: pickle.dumps([{"k": i, "v": [i, i + 1]} for i in range(n // 2)], protocol=5),
    }


def _time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="stream length multiplier (1.0: 2-4 M opcodes)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, build in _shapes(args.scale).items():
            data = build()
            ops = pickle_ops.count_ops(data)
            ours = _time(lambda data=data: walk(data), args.repeat)  # type: ignore[misc]
            loads = _time(lambda data=data: pickle.loads(data), args.repeat)  # type: ignore[misc]  # the loader itself
            assert walk(data).ok
            peer: float | None = None
            if PEER_PYTHON.exists():
                path = Path(tmp) / "stream.pkl"
                path.write_bytes(data)
                done = subprocess.run(
                    [str(PEER_PYTHON), "-c", _PICKLESCAN, str(path), str(args.repeat)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                peer = statistics.median(json.loads(done.stdout)["times"])
            row = {
                "stream": label,
                "bytes": len(data),
                "opcodes": ops,
                "modelgate_s": round(ours, 4),
                "modelgate_mops_per_s": round(ops / ours / 1e6, 2),
                "pickle_loads_mops_per_s": round(ops / loads / 1e6, 2),
                "picklescan_s": None if peer is None else round(peer, 4),
                "picklescan_mops_per_s": None if peer is None else round(ops / peer / 1e6, 2),
                "speedup": None if peer is None else round(peer / ours, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| stream | opcodes | modelgate M op/s | picklescan M op/s | ratio | pickle.loads M op/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['stream']} | {row['opcodes']:,} | {row['modelgate_mops_per_s']} | "
            f"{row['picklescan_mops_per_s']} | {row['speedup']}x | {row['pickle_loads_mops_per_s']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
