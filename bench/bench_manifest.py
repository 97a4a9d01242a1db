"""Manifest hashing: modelgate's ``build_manifest`` against model-signing's own hashing.

Creates (or reuses) a model-like folder, warms the page cache, then times, alternating,
(a) ``modelgate.manifest.build_manifest`` and (b) the hashing of the OpenSSF
``model_signing`` package (1.1.1 has no ``digest`` CLI command, so its Python API
``model_signing.hashing.Config().hash``), and computes (c) the machine's SHA-256 bound:
bytes / (single-core in-memory ``hashlib.sha256`` throughput x cores). Both tools must
produce the same root digest. Prints a markdown table and one JSON line.

    python bench/bench_manifest.py --size-gb 2 [--layout shards|single|small] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelgate.manifest import build_manifest  # noqa: E402

GB = 1_000_000_000
CHUNK = 16 << 20


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            n = min(left, CHUNK)
            handle.write(os.urandom(n))
            left -= n


def layout_files(layout: str, total: int, seed: int = 0) -> dict[str, int]:
    """Relative path -> size for a model-like folder of about ``total`` bytes."""
    rng = random.Random(seed)
    small = {
        "config.json": 1_200,
        "generation_config.json": 180,
        "special_tokens_map.json": 550,
        "tokenizer_config.json": 3_400,
        "tokenizer.json": 2_100_000,
        "README.md": 6_000,
        "model.safetensors.index.json": 40_000,
    }
    if layout == "single":
        return {"model.safetensors": total - sum(small.values()), **small}
    if layout == "small":
        files: dict[str, int] = {}
        left, index = total, 0
        while left > 0:
            size = min(left, rng.randrange(4_096, 262_144))
            files[f"shards/{index // 1000:03d}/part-{index:06d}.bin"] = size
            left -= size
            index += 1
        return files
    budget = total - sum(small.values())
    count = max(1, math.ceil(budget / (450 * 1_000_000)))
    weights = [rng.uniform(0.75, 1.25) for _ in range(count)]
    sizes = [int(budget * w / sum(weights)) for w in weights]
    sizes[0] += budget - sum(sizes)
    shards = {f"model-{i + 1:05d}-of-{count:05d}.safetensors": s for i, s in enumerate(sizes)}
    return {**shards, **small}


def prepare(folder: Path, layout: str, size_gb: float) -> Path:
    """Create the model folder, or reuse it when the recorded layout matches."""
    files = layout_files(layout, int(size_gb * GB))
    spec = {"layout": layout, "size_gb": size_gb, "files": files}
    model = folder / f"model-{layout}-{size_gb:g}gb"
    spec_path = folder / f"model-{layout}-{size_gb:g}gb.spec.json"
    if spec_path.is_file() and json.loads(spec_path.read_text()) == spec:
        print(f"reusing {model}", file=sys.stderr)
        return model
    print(f"creating {model} ({len(files)} files, {sum(files.values()) / GB:.2f} GB)", file=sys.stderr)
    for rel, size in files.items():
        _write_random(model / rel, size)
    spec_path.write_text(json.dumps(spec))
    return model


def warm(model: Path) -> None:
    """Read every file once so all timings start from the page cache."""
    buf = bytearray(CHUNK)
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buf):
                pass


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sha256_per_core(repeats: int = 5) -> float:
    """Bytes/s of one core hashing a 256 MiB in-memory buffer in 1 MiB updates (best of ``repeats``)."""
    data = memoryview(os.urandom(256 << 20))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        hasher = hashlib.sha256()
        for offset in range(0, len(data), 1 << 20):
            hasher.update(data[offset : offset + (1 << 20)])
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def run_ours(model: Path, workers: int | None) -> str:
    return build_manifest(model, ignore=(), workers=workers).root_digest


def run_theirs(model: Path) -> str:
    from model_signing import hashing

    manifest = hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False).hash(model)
    root = hashlib.sha256()
    for descriptor in manifest.resource_descriptors():
        root.update(descriptor.digest.digest_value)
    return "sha256:" + root.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/modelgate-bench"), help="Folder for the test models.")
    parser.add_argument("--size-gb", type=float, default=2.0, help="Model size in GB (10^9 bytes).")
    parser.add_argument("--layout", choices=["shards", "single", "small"], default="shards")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per tool (at least 3).")
    parser.add_argument("--workers", type=int, default=None, help="modelgate hashing threads (default: automatic).")
    parser.add_argument("--json-out", type=Path, help="Append the JSON result line to this file.")
    args = parser.parse_args()
    repeats = max(3, args.repeats)

    model = prepare(args.dir, args.layout, args.size_gb)
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    count = sum(1 for p in model.rglob("*") if p.is_file())
    warm(model)
    load_before = os.getloadavg()
    per_core = sha256_per_core()
    n_cores = cores()
    bound_s = total / (per_core * n_cores)

    ours_digest, theirs_digest = run_ours(model, args.workers), run_theirs(model)  # untimed warm-up
    if ours_digest != theirs_digest:
        print(f"ROOT DIGEST MISMATCH: modelgate {ours_digest} vs model_signing {theirs_digest}", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = {"modelgate": [], "model_signing": []}
    for _ in range(repeats):
        for name in ("modelgate", "model_signing"):
            start = time.perf_counter()
            digest = run_ours(model, args.workers) if name == "modelgate" else run_theirs(model)
            times[name].append(time.perf_counter() - start)
            assert digest == ours_digest
    load_after = os.getloadavg()

    ours, theirs = statistics.median(times["modelgate"]), statistics.median(times["model_signing"])
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {_cpu_name()}",
        "cores": n_cores,
        "python": platform.python_version(),
        "layout": args.layout,
        "files": count,
        "bytes": total,
        "root_digest": ours_digest,
        "sha256_per_core_gbps": round(per_core / GB, 3),
        "bound_s": round(bound_s, 4),
        "modelgate_s": [round(t, 4) for t in times["modelgate"]],
        "model_signing_s": [round(t, 4) for t in times["model_signing"]],
        "modelgate_median_s": round(ours, 4),
        "model_signing_median_s": round(theirs, 4),
        "ratio_ours_theirs": round(ours / theirs, 3),
        "modelgate_pct_of_bound": round(100 * bound_s / ours, 1),
        "model_signing_pct_of_bound": round(100 * bound_s / theirs, 1),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(_table(result))
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _table(r: dict[str, Any]) -> str:
    gb = r["bytes"] / GB
    rows = [
        ("modelgate `build_manifest`", r["modelgate_median_s"], r["ratio_ours_theirs"], r["modelgate_pct_of_bound"]),
        ("model_signing `hashing.Config().hash`", r["model_signing_median_s"], 1.0, r["model_signing_pct_of_bound"]),
        (f"sha256 bound ({r['cores']} cores x {r['sha256_per_core_gbps']} GB/s)", r["bound_s"], None, 100.0),
    ]
    lines = [
        f"{r['layout']} layout: {r['files']} files, {gb:.2f} GB, {r['cores']} cores, median of "
        f"{len(r['modelgate_s'])} alternating runs",
        "",
        "| tool | median s | GB/s | ours/theirs | % of sha256 bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds, ratio, pct in rows:
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {name} | {seconds:.3f} | {gb / seconds:.2f} | {ratio_text} | {pct:.0f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
