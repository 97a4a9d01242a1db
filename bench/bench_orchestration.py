"""Orchestration overhead per intake run, and throughput of concurrent intakes, against a running Prefect server.

Uses ``PREFECT_API_URL`` when set, else starts the embedded Prefect server (``modelgate.services``, SQLite)
on a free loopback port with a throw-away ``MODELGATE_HOME``. Builds the example models once, then:

1. **Overhead**: ``--runs`` intake runs in this process, one after the other (after one untimed warm-up),
   rotating the signed / unsigned / tampered examples. Per run: wall time of the flow call, the sum of the
   stages' own ``duration_s`` (from the evidence JSON), overhead = wall - sum. The overhead is split with
   the server's records: *engine* (wall - the flow run's start..end), *flow body* (flow run - the task runs'
   start..end, i.e. the flow's own code and the API calls between tasks) and *task wrappers* (task runs -
   the stages inside them: task run creation, state changes, result persistence, artifacts).
2. **Throughput**: at each ``--concurrency`` level, ``--throughput-runs`` runs of ``modelgate intake`` as
   subprocesses (a process worker starts each flow run as a process too), ``c`` at a time; runs per minute.

``--eval-data sklearn:digits`` includes the evaluations (minutes per run on CPU). ``--profile`` runs
one more intake under cProfile and prints where the non-stage time goes. ``--ledger on`` (default)
records every run in the DVC evidence ledger as ``make run`` does, with SeaweedFS on free loopback ports
as its remote (the ``version`` stage is a stage: its time is not overhead); no registry is configured,
so approved models are not published. ``--ledger off`` sets ``MODELGATE_LEDGER=off``.

    python bench/bench_orchestration.py [--runs 6] [--concurrency 1,2,4] [--throughput-runs 8] [--json-out F]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXAMPLES = ("digits-cnn-signed", "digits-cnn-unsigned", "digits-cnn-tampered")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolate(work: Path) -> None:
    """Throw-away homes, before anything imports Prefect; no registry, so nothing is published."""
    os.environ.update(
        {
            "MODELGATE_HOME": str(work / "home"),
            "MODELGATE_EVIDENCE_DIR": str(work / "evidence"),
            "PREFECT_HOME": str(work / "prefect-client"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GX_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "DVC_NO_ANALYTICS": "1",
        }
    )
    for key in ("MODELGATE_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MODELGATE_REGISTRY_BUCKET"):
        os.environ.pop(key, None)


def _start_ledger_remote(stack: ExitStack, work: Path) -> None:
    """SeaweedFS for the DVC remote only (MODELGATE_DVC_ENDPOINT: the registry stays unconfigured)."""
    from tests.helpers.servers import seaweedfs

    server = stack.enter_context(seaweedfs(work / "s3"))
    os.environ.update(
        MODELGATE_LEDGER="on",
        MODELGATE_DVC_ENDPOINT=server.endpoint_url,
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
    )


def _start_server() -> tuple[str, Any]:
    if url := os.environ.get("PREFECT_API_URL"):
        return url, None
    from modelgate import services
    from modelgate.settings import load_settings

    os.environ["MODELGATE_PREFECT_PORT"] = str(_free_port())
    settings = load_settings()
    state = services.start("prefect", settings=settings, timeout_s=180)
    os.environ["PREFECT_API_URL"] = f"{state.url}/api"
    return os.environ["PREFECT_API_URL"], settings


def _stage_seconds(evidence_dir: Path) -> dict[str, float]:
    """Each stage's own duration, from the evidence files it wrote."""
    out: dict[str, float] = {}
    for path in evidence_dir.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "stage" in data and data.get("duration_s") is not None:
            out[data["stage"]] = float(data["duration_s"])
    return out


async def _server_times(run_id: str, expected_tasks: int) -> tuple[float, float, int]:
    """(flow run start..end, sum of its task runs' start..end, task run count) as the server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        deadline = time.monotonic() + 30
        while True:  # task run states reach the server through events: wait until they are all recorded
            flow_run = await client.read_flow_run(run_id)
            runs = [flow_run.id]
            subflows = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]))
            )
            runs += [s.id for s in subflows]
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)))
            done = [t for t in tasks if t.start_time and t.end_time and t.flow_run_id == flow_run.id]
            if (flow_run.end_time and len(done) >= expected_tasks) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    if flow_run.start_time is None or flow_run.end_time is None:
        return float("nan"), float("nan"), len(done)
    flow_s = (flow_run.end_time - flow_run.start_time).total_seconds()
    task_s = sum((t.end_time - t.start_time).total_seconds() for t in done if t.end_time and t.start_time)
    return flow_s, task_s, len(done)


def _one_run(index: int, examples: dict[str, Path], eval_data: str | None) -> dict[str, Any]:
    from flows.intake import intake
    from modelgate.request import IntakeRequest

    model = EXAMPLES[index % len(EXAMPLES)]
    request = IntakeRequest(
        source=str(examples[model]), name="bench-model", version=f"1.0.{index}", eval_data=eval_data
    )
    start = time.perf_counter()
    outcome = intake(request)
    wall = time.perf_counter() - start
    stages = _stage_seconds(Path(outcome.evidence_dir))
    # Skipped stages are recorded by the flow without a task run (or by a task that found nothing to do).
    expected = len([s for s, status in outcome.stages.items() if status != "skipped"])
    flow_s, task_s, task_count = asyncio.run(_server_times(outcome.run_id, expected))
    stage_sum = sum(stages.values())
    return {
        "model": model,
        "decision": outcome.decision,
        "wall_s": wall,
        "stage_sum_s": stage_sum,
        "overhead_s": wall - stage_sum,
        "engine_s": wall - flow_s,
        "flow_body_s": flow_s - task_s,
        "task_wrappers_s": task_s - stage_sum,
        "task_runs": task_count,
        "stages_s": stages,
    }


def _cli_run(index: int, example: Path, eval_data: str | None) -> tuple[float, float]:
    """(wall, sum of the stages' own time) of one ``modelgate intake`` process."""
    command = [sys.executable, "-m", "modelgate.cli", "intake", str(example), "--name", "bench-tp", "--json"]
    command += ["--version", f"2.0.{index}-{time.time_ns()}"] + (["--eval-data", eval_data] if eval_data else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), cwd=REPO, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"intake {example.name} exited {done.returncode}: {done.stderr.strip()[-3000:]}")
    outcome = json.loads(done.stdout)
    return wall, sum(_stage_seconds(Path(outcome["evidence_dir"])).values())


def _import_seconds(repeats: int = 3) -> float:
    """What a fresh process pays before a flow can start: importing the intake flow (median)."""
    code = "import time; t = time.perf_counter(); import flows.intake; print(time.perf_counter() - t)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout)
        for _ in range(repeats)
    ]
    return statistics.median(times)


def _throughput(level: int, runs: int, examples: dict[str, Path], eval_data: str | None) -> dict[str, Any]:
    models = [examples[EXAMPLES[i % len(EXAMPLES)]] for i in range(runs)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=level) as pool:
        results = list(pool.map(lambda item: _cli_run(item[0], item[1], eval_data), enumerate(models)))
    elapsed = time.perf_counter() - start
    return {
        "concurrency": level,
        "runs": runs,
        "elapsed_s": elapsed,
        "runs_per_min": runs / elapsed * 60,
        "median_run_s": statistics.median(wall for wall, _ in results),
        "median_stage_sum_s": statistics.median(stages for _, stages in results),
        "median_non_stage_s": statistics.median(wall - stages for wall, stages in results),
    }


def _profile(examples: dict[str, Path], eval_data: str | None, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    _one_run(10_000, examples, eval_data)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="Sequential in-process runs for the overhead.")
    parser.add_argument("--concurrency", default="1,2,4", help="Comma-separated concurrency levels.")
    parser.add_argument("--throughput-runs", type=int, default=8, help="Runs per concurrency level (0: skip).")
    parser.add_argument("--eval-data", default=None, help="Include the evaluations (e.g. sklearn:digits).")
    parser.add_argument("--ledger", choices=("on", "off"), default="on", help="Record runs in the DVC ledger.")
    parser.add_argument(
        "--gpu-limit", action="store_true", help="Create the `gpu` concurrency limit first, as `modelgate serve` does."
    )
    parser.add_argument("--profile", action="store_true", help="Profile one more run and print the top calls.")
    parser.add_argument("--json-out", type=Path, help="Append the JSON line to this file.")
    parser.add_argument("--dir", type=Path, help="Work folder (default: a temporary folder, removed after).")
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-orchestration-"))
    work.mkdir(parents=True, exist_ok=True)
    _isolate(work)
    server_settings = None
    stack = ExitStack()
    try:
        if args.ledger == "on":
            _start_ledger_remote(stack, work)
        else:
            os.environ["MODELGATE_LEDGER"] = "off"
        api_url, server_settings = _start_server()
        if args.gpu_limit:
            from flows.deployments import ensure_gpu_limit

            ensure_gpu_limit(1)
        from modelgate.demo.build import build_examples

        start = time.perf_counter()
        examples = build_examples(work / "examples")
        build_s = time.perf_counter() - start
        _one_run(9_999, examples, args.eval_data)  # warm-up: imports, first writes, the ledger's first clone
        runs = [_one_run(i, examples, args.eval_data) for i in range(args.runs)]
        profile = _profile(examples, args.eval_data) if args.profile else None
        import_s = _import_seconds()
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
        throughput = [
            _throughput(c, args.throughput_runs, examples, args.eval_data) for c in levels if args.throughput_runs
        ]
    finally:
        if server_settings is not None:
            from modelgate import services

            services.stop("prefect", settings=server_settings)
        stack.close()
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    keys = ("wall_s", "stage_sum_s", "overhead_s", "engine_s", "flow_body_s", "task_wrappers_s")
    summary = {
        k: {"median": statistics.median(r[k] for r in runs), "p90": _pct([r[k] for r in runs], 0.9)} for k in keys
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nIntake orchestration, {len(runs)} runs (eval data: {args.eval_data or 'none'}, gpu limit: "
        f"{'yes' if args.gpu_limit else 'no'}), server {api_url}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, load average {load}; examples built in {build_s:.0f} s\n"
    )
    print("| per run | median s | p90 s |")
    print("|---|---:|---:|")
    for key in keys:
        print(
            f"| {key.removesuffix('_s').replace('_', ' ')} | {summary[key]['median']:.2f} | {summary[key]['p90']:.2f} |"
        )
    print(f"\nA fresh process imports the intake flow in {import_s:.1f} s (median of 3); `modelgate intake` pays it.")
    if throughput:
        print("\n| concurrency | runs | elapsed s | runs/min | median run s | its stages s | the rest s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for row in throughput:
            print(
                f"| {row['concurrency']} | {row['runs']} | {row['elapsed_s']:.1f} | {row['runs_per_min']:.1f} "
                f"| {row['median_run_s']:.1f} | {row['median_stage_sum_s']:.1f} | {row['median_non_stage_s']:.1f} |"
            )
    if profile:
        print("\n" + profile)
    line = json.dumps(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "eval_data": args.eval_data,
            "ledger": args.ledger,
            "gpu_limit": args.gpu_limit,
            "import_s": round(import_s, 3),
            "summary": {k: {m: round(v, 3) for m, v in s.items()} for k, s in summary.items()},
            "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
            "throughput": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in throughput],
        }
    )
    print(line)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        with args.json_out.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
