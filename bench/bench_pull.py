"""Registry pull (verify included) against a plain boto3 download of the same objects, same server, same run.

Starts SeaweedFS (``weed mini``, as in the tests) on free loopback ports, publishes a model of
``--size-gb`` split into ``--shards`` random shards plus small files, then alternates, ``--repeats``
times, each into a fresh folder next to the other:

* ``modelgate pull``: resolve, verify the attestation signature and the manifest, ranged parallel
  GETs with every file hashed while streaming, atomic move into place;
* ``boto3 download_file``: every object of ``files/`` one after the other, each with
  ``TransferConfig(max_concurrency=W, multipart_chunksize=P, multipart_threshold=P)``; no hashing;
* ``boto3 TransferManager``: all objects queued at once on one manager with the same config
  (the best plain boto3 can do: files overlap as in pull); no hashing.

Runs are interleaved, their order rotated every repeat, with a ``sync`` between runs. W
(``--workers``) and P (``--part-mb``) are the same for all three, and all use the same botocore
config (path-style, checksums only when required, a connection pool of 2*W). Reports the median
MB/s (10^6 bytes) and pull's ratio to each baseline. Prints a markdown table and one JSON line.

    python bench/bench_pull.py --size-gb 1 [--shards 4] [--workers 8] [--part-mb 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boto3.s3.transfer import TransferConfig, create_transfer_manager  # noqa: E402

from modelgate.registry import RegistryConfig, ensure_key_pair, publish, pull  # noqa: E402
from modelgate.registry.signer import FileSigner  # noqa: E402
from tests.helpers.registry import intake, policy_dir  # noqa: E402
from tests.helpers.servers import seaweedfs  # noqa: E402

GB = 1_000_000_000
CHUNK = 16 << 20
BUCKET = "modelgate-registry"


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            n = min(left, CHUNK)
            handle.write(os.urandom(n))
            left -= n


def _model(folder: Path, total: int, shards: int) -> dict[str, bytes]:
    """Write the shards to ``folder/model``; return the small files for the intake helper to add."""
    model = folder / "model"
    model.mkdir(parents=True)
    per = total // shards
    for i in range(shards):
        _write_random(model / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", per)
    return {"config.json": b'{"hidden": 4096}', "tokenizer.json": os.urandom(2_000_000)}


def _timed(run: Callable[[Path], Any], dest: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one run into a fresh folder."""
    shutil.rmtree(dest, ignore_errors=True)
    cpu = time.process_time()
    start = time.perf_counter()
    run(dest)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    shutil.rmtree(dest, ignore_errors=True)
    os.sync()  # the next run starts with no dirty pages of this one to write back
    time.sleep(0.5)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--part-mb", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="Work folder (default: a temporary folder, removed after).")
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-pull-"))
    work.mkdir(parents=True, exist_ok=True)
    total = int(args.size_gb * GB)
    try:
        with seaweedfs(work / "s3") as server:
            config = RegistryConfig(
                bucket=BUCKET,
                endpoint=server.endpoint_url,
                access_key=server.access_key,
                secret_key=server.secret_key,
                workers=args.workers,
                part_size=args.part_mb << 20,
                keys_dir=work / "keys",
            )
            client = config.client()
            client.create_bucket(Bucket=BUCKET)
            private, _, _ = ensure_key_pair(config.keys_dir)
            signer = FileSigner.from_file(private)
            small = _model(work / "intake", total, args.shards)
            item = intake(work / "intake", "bench-model", "1.0.0", small, policy_dir(work / "policies"))
            start = time.perf_counter()
            publish(**item.publish_kwargs(), config=config, signer=signer)
            publish_s = time.perf_counter() - start
            size = item.manifest.total_bytes
            prefix = "models/bench-model/1.0.0/files/"
            keys = [prefix + e.path for e in item.manifest.files]
            transfer = TransferConfig(
                max_concurrency=args.workers,
                multipart_chunksize=args.part_mb << 20,
                multipart_threshold=args.part_mb << 20,
                use_threads=True,
            )

            def modelgate_pull(dest: Path) -> None:
                pull("bench-model@1.0.0", None, dest, client=client, public_key=signer.public_key, config=config)

            def boto3_download_file(dest: Path) -> None:
                for key in keys:
                    target = dest / key[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(BUCKET, key, str(target), Config=transfer)

            def boto3_transfer_manager(dest: Path) -> None:
                with create_transfer_manager(client, transfer) as manager:
                    futures = []
                    for key in keys:
                        target = dest / key[len(prefix) :]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        futures.append(manager.download(BUCKET, key, str(target)))
                    for future in futures:
                        future.result()

            runs: dict[str, Callable[[Path], Any]] = {
                "modelgate pull (verify included)": modelgate_pull,
                "boto3 download_file (per object)": boto3_download_file,
                "boto3 TransferManager (all objects)": boto3_transfer_manager,
            }
            times: dict[str, list[float]] = {label: [] for label in runs}
            cpus: dict[str, list[float]] = {label: [] for label in runs}
            for run in runs.values():  # one untimed run each: server caches, client pools and arenas
                _timed(run, work / "warm")
            labels = list(runs)
            for repeat in range(args.repeats):
                # Rotate the order: on a shared machine the run after another pays for its aftermath.
                for label in labels[repeat % len(labels) :] + labels[: repeat % len(labels)]:
                    seconds, cpu = _timed(runs[label], work / "dest")
                    times[label].append(seconds)
                    cpus[label].append(cpu)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    medians = {label: statistics.median(values) for label, values in times.items()}
    rates = {label: size / seconds / 1e6 for label, seconds in medians.items()}
    pull_label = next(iter(runs))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nRegistry pull, {size / GB:.2f} GB in {len(keys)} files ({args.shards} shards), "
        f"W={args.workers} workers, P={args.part_mb} MiB parts, median of {args.repeats}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, load average {load}, publish took {publish_s:.1f} s\n"
    )
    print("| method | median s | MB/s | pull / method | client CPU s per GB |")
    print("|---|---:|---:|---:|---:|")
    for label in runs:
        ratio = rates[pull_label] / rates[label]
        cpu_per_gb = statistics.median(cpus[label]) / (size / GB)
        print(f"| {label} | {medians[label]:.2f} | {rates[label]:.0f} | {ratio:.2f}x | {cpu_per_gb:.2f} |")
    print(
        json.dumps(
            {
                "bytes": size,
                "files": len(keys),
                "workers": args.workers,
                "part_mb": args.part_mb,
                "repeats": args.repeats,
                "cpus": os.cpu_count(),
                "publish_s": round(publish_s, 2),
                "times_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
                "client_cpu_s": {k: [round(v, 3) for v in vs] for k, vs in cpus.items()},
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "mb_per_s": {k: round(v, 1) for k, v in rates.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
