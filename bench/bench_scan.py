"""Serialization scan: modelgate against modelaudit, picklescan, modelscan and fickling, in one run.

Three measurements on the same inputs:

1. detection: every sample of the generated corpus (``tests/helpers/scan_corpus.py``), each tool's verdict
   per technique: detected / missed for malicious samples, clean / false positive for benign ones;
2. throughput (MB/s) on >= 1 GB of benign PyTorch checkpoints (zip and legacy ``torch.save`` state
   dicts, created once under ``--dir`` and reused), page cache warm, median of alternating runs;
3. per-file latency on ~50 small checkpoints, each tool started once per file (process start
   included); modelgate is measured both in-process (``scan_path``) and as its CLI;
4. start-up: ``modelgate scan FILE`` (table and ``--json``) against ``picklescan -p FILE`` on the
   same tiny files (a pickle, a safetensors file), alternating, median of ``--startup-repeats``
   runs, with the ratio; each venv's bare ``python -c pass`` is the floor. ``--startup`` runs only
   this part (no torch needed, about a minute).

The peers run through their CLIs from their own virtualenv (``bench/setup_peers_scan.sh``) with
telemetry off. fickling's CLI reads a local file only as stacked pickles (a zip checkpoint is a
parse error), so it is called through the two functions its own CLI uses for hub models,
``fickling.scan_zip_archive`` for zips and ``fickling.scan_file`` otherwise, in a ``python -c``.

    python bench/bench_scan.py [--dir /tmp/modelgate-bench-scan] [--size-gb 1.1] [--repeats 3]
    python bench/bench_scan.py --startup [--startup-repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MB = 1_000_000
GB = 1_000_000_000
PEERS = ("modelaudit", "picklescan", "modelscan", "fickling")
TELEMETRY_OFF = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",  # modelaudit (modelaudit/telemetry.py)
    "NO_ANALYTICS": "1",  # modelaudit
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}
FICKLING_WRAPPER = r"""
import json, os, sys, zipfile
import fickling
from fickling.analysis import Severity
out = os.path.join(os.getcwd(), "fickling.json")
target = sys.argv[1]
paths = [target] if os.path.isfile(target) else sorted(
    os.path.join(d, f) for d, _, fs in os.walk(target) for f in fs)
flagged, errors, scanned, first = 0, 0, 0, ""
for path in paths:
    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(path, graceful=True, json_output_path=out).values())
    elif path.endswith((".json", ".safetensors", ".onnx")):
        continue
    else:
        results = [fickling.scan_file(path, graceful=True, json_output_path=out)]
    for r in results:
        scanned += 1
        if r.errors:
            errors += 1
            first = first or r.errors[0][:120]
        elif r.severity > Severity.LIKELY_SAFE:
            flagged += 1
            first = first or f"{r.filepath}: {r.severity.name}"
print(json.dumps({"flagged": flagged, "errors": errors, "scanned": scanned, "first": first}))
"""


@dataclass
class Outcome:
    """One tool on one input: its verdict as a gate using the tool would read it."""

    status: str  # flagged | clean | error | skipped | timeout
    seconds: float
    detail: str = ""
    critical: bool | None = None  # modelaudit: a critical issue among its findings


# ---------------------------------------------------------------- runners


class Runner:
    def __init__(self, peers_venv: Path, work: Path, timeout_s: float) -> None:
        self.bin = peers_venv.absolute() / "bin"
        self.work = work
        self.timeout_s = timeout_s
        home = work / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **TELEMETRY_OFF, "HOME": str(home)}
        self.mg_env = {**os.environ, **TELEMETRY_OFF}

    def _run(self, cmd: list[str], env: dict[str, str]) -> tuple[int | None, str, str, float]:
        cwd = Path(tempfile.mkdtemp(dir=self.work))
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=self.timeout_s, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(cwd, ignore_errors=True)
            return None, "", "", time.perf_counter() - start
        seconds = time.perf_counter() - start
        shutil.rmtree(cwd, ignore_errors=True)
        return proc.returncode, proc.stdout, proc.stderr, seconds

    def modelgate(self, path: Path, *, digests: bool = False) -> Outcome:
        """As the intake runs it: the scan alone (the run's digests come from the manifest stage)."""
        from modelgate.scan import scan_path
        from modelgate.scan.findings import BLOCKING

        start = time.perf_counter()
        try:
            report = scan_path(path, digests=digests)
        except Exception as exc:  # noqa: BLE001 - a crash is an outcome to report
            return Outcome("error", time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:160])
        seconds = time.perf_counter() - start
        blocking = [f for f in report.findings if f.category in BLOCKING]
        detail = ""
        if blocking:
            first = blocking[0]
            detail = f"{first.rule_id} {first.global_name or ''}".strip()
        return Outcome("flagged" if report.verdict == "unsafe" else "clean", seconds, detail)

    def modelgate_with_sha256(self, path: Path) -> Outcome:
        """The scan plus its own sha256 of every byte (the standalone scan with ``--digests``)."""
        return self.modelgate(path, digests=True)

    def modelgate_cli(self, path: Path) -> Outcome:
        code, out, err, seconds = self._run(
            [str(REPO / ".venv/bin/modelgate"), "scan", str(path), "--json"], self.mg_env
        )
        if code is None:
            return Outcome("timeout", seconds)
        status = {0: "clean", 1: "flagged"}.get(code, "error")
        return Outcome(status, seconds, "" if code in (0, 1) else _last_line(err or out))

    def modelaudit(self, path: Path) -> Outcome:
        cmd = [str(self.bin / "modelaudit"), "scan", "--format", "json", "--no-cache", "--timeout", "3600", str(path)]
        code, out, err, seconds = self._run(cmd, self.env)
        if code is None:
            return Outcome("timeout", seconds)
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            return Outcome("error", seconds, _last_line(err or out))
        issues = [i for i in data.get("issues", []) if i.get("severity") in ("critical", "warning")]
        critical = [i for i in issues if i.get("severity") == "critical"]
        detail = (critical or issues or [{}])[0].get("message", "")[:120]
        if code == 1 or (code == 2 and issues):
            return Outcome("flagged", seconds, detail, critical=bool(critical))
        if code == 0:
            return Outcome("clean", seconds, critical=False)
        return Outcome("error", seconds, _last_line(err) or "exit 2", critical=False)

    def picklescan(self, path: Path) -> Outcome:
        code, out, err, seconds = self._run([str(self.bin / "picklescan"), "-p", str(path)], self.env)
        if code is None:
            return Outcome("timeout", seconds)
        infected = re.search(r"Infected files: (\d+)", out)
        scanned = re.search(r"Scanned files: (\d+)", out)
        found = [line for line in out.splitlines() if "FOUND" in line]
        if infected and int(infected.group(1)) > 0:
            return Outcome("flagged", seconds, found[0][-120:] if found else "")
        if code == 2:
            return Outcome("error", seconds, _last_line(err or out))
        if scanned and int(scanned.group(1)) == 0:
            return Outcome("skipped", seconds, "no file scanned")
        return Outcome("clean", seconds)

    def modelscan(self, path: Path) -> Outcome:
        report = self.work / "modelscan.json"
        report.unlink(missing_ok=True)
        cmd = [str(self.bin / "modelscan"), "scan", "-p", str(path), "-r", "json", "-o", str(report)]
        code, out, err, seconds = self._run(cmd, self.env)
        if code is None:
            return Outcome("timeout", seconds)
        data: dict[str, Any] = {}
        if report.exists():
            try:
                data = json.loads(report.read_text())
            except json.JSONDecodeError:
                data = {}
        issues = data.get("issues", [])
        if code == 1 or issues:
            return Outcome("flagged", seconds, (issues or [{}])[0].get("description", "")[:120])
        if code == 3:
            return Outcome("skipped", seconds, "no supported file")
        if code == 2:
            errors = data.get("errors", [])
            return Outcome("error", seconds, str(errors[0])[:120] if errors else _last_line(err or out))
        return Outcome("clean" if code == 0 else "error", seconds)

    def fickling(self, path: Path) -> Outcome:
        code, out, err, seconds = self._run([str(self.bin / "python"), "-c", FICKLING_WRAPPER, str(path)], self.env)
        if code is None:
            return Outcome("timeout", seconds)
        try:
            data = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return Outcome("error", seconds, _last_line(err or out))
        if data["flagged"]:
            return Outcome("flagged", seconds, data["first"])
        if data["errors"]:
            return Outcome("error", seconds, data["first"])
        if not data["scanned"]:
            return Outcome("skipped", seconds, "no file scanned")
        return Outcome("clean", seconds)

    def tools(self) -> dict[str, Callable[[Path], Outcome]]:
        return {
            "modelgate": self.modelgate,
            "modelgate+sha256": self.modelgate_with_sha256,
            "modelgate-cli": self.modelgate_cli,
            "modelaudit": self.modelaudit,
            "picklescan": self.picklescan,
            "modelscan": self.modelscan,
            "fickling": self.fickling,
        }


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


# ---------------------------------------------------------------- inputs


def build_checkpoints(folder: Path, size_gb: float) -> Path:
    """Benign ``torch.save`` state dicts of ~270 MB, alternating zip and legacy, created once."""
    import torch

    count = max(2, round(size_gb * GB / (270 * MB)))
    spec = {"size_gb": size_gb, "count": count, "layout": "transformer-like v1"}
    target = folder / f"checkpoints-{size_gb:g}gb"
    spec_path = folder / f"checkpoints-{size_gb:g}gb.spec.json"
    if spec_path.is_file() and json.loads(spec_path.read_text()) == spec:
        print(f"reusing {target}", file=sys.stderr)
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    per_file = size_gb * GB / count
    for index in range(count):
        generator = torch.Generator().manual_seed(index)
        state: dict[str, torch.Tensor] = {}
        hidden = 1024
        layer = 0
        while sum(t.numel() * t.element_size() for t in state.values()) < per_file - 4 * hidden * hidden * 4:
            prefix = f"model.layers.{layer}"
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                state[f"{prefix}.self_attn.{name}.weight"] = torch.randn(hidden, hidden, generator=generator)
                state[f"{prefix}.self_attn.{name}.bias"] = torch.randn(hidden, generator=generator)
            state[f"{prefix}.mlp.up.weight"] = torch.randn(2 * hidden, hidden, generator=generator).half()
            state[f"{prefix}.input_layernorm.weight"] = torch.ones(hidden)
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(layer)
            layer += 1
        legacy = index % 2 == 1
        name = f"ckpt-{index}-{'legacy' if legacy else 'zip'}.{'bin' if legacy else 'pt'}"
        torch.save(state, target / name, _use_new_zipfile_serialization=not legacy)
        print(f"created {target / name} ({(target / name).stat().st_size / MB:.0f} MB)", file=sys.stderr)
    spec_path.write_text(json.dumps(spec))
    return target


def build_small_files(folder: Path, count: int) -> list[Path]:
    """``count`` small benign checkpoints (3 to 75 kB), half zip, half legacy, created once."""
    import torch

    target = folder / f"small-{count}"
    files = sorted(target.glob("*")) if target.is_dir() else []
    if len(files) == count:
        return files
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for index in range(count):
        generator = torch.Generator().manual_seed(1000 + index)
        width = 16 + (index * 37) % 480
        state = {
            "conv1.weight": torch.randn(width, 3, 3, 3, generator=generator),
            "bn1.running_mean": torch.zeros(width),
            "bn1.num_batches_tracked": torch.tensor(index),
            "fc.weight": torch.randn(10, width, generator=generator),
            "fc.bias": torch.zeros(10),
        }
        legacy = index % 2 == 1
        name = f"small-{index:03d}.{'bin' if legacy else 'pt'}"
        torch.save(state, target / name, _use_new_zipfile_serialization=not legacy)
    return sorted(target.glob("*"))


def warm(paths: list[Path]) -> None:
    buffer = bytearray(16 << 20)
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            with open(file, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def is_malicious(sample: Any) -> bool:
    expected = sample.expected
    if isinstance(expected, bool):
        return expected
    return str(expected).lower() in ("unsafe", "malicious", "dangerous", "flagged")


# ---------------------------------------------------------------- measurements


def detection(runner: Runner, corpus_dir: Path, tools: list[str]) -> list[dict[str, Any]]:
    from tests.helpers.scan_corpus import build_corpus

    samples = build_corpus(corpus_dir)
    rows = []
    calls = runner.tools()
    for sample in samples:
        row: dict[str, Any] = {
            "path": _display(Path(sample.path), corpus_dir),
            "technique": sample.technique,
            "malicious": is_malicious(sample),
            "outcomes": {},
        }
        for tool in tools:
            row["outcomes"][tool] = asdict(calls[tool](Path(sample.path)))
        rows.append(row)
        print(
            f"  {row['technique']}: " + " ".join(f"{t}={o['status']}" for t, o in row["outcomes"].items()),
            file=sys.stderr,
        )
    return rows


def _display(path: Path, corpus_dir: Path) -> str:
    """The sample's path inside the corpus, or ``<package>/.../<name>`` for weights shipped by a package."""
    if path.is_relative_to(corpus_dir):
        return path.relative_to(corpus_dir).as_posix()
    parts = path.parts
    return f"{parts[parts.index('site-packages') + 1]}/…/{path.name}" if "site-packages" in parts else path.name


def throughput(runner: Runner, folder: Path, tools: list[str], repeats: int) -> dict[str, Any]:
    calls = runner.tools()
    total = size_of(folder)
    warm([folder])
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    status: dict[str, str] = {}
    for tool in tools:  # untimed warm-up: imports, caches, the modelaudit first-run config
        status[tool] = calls[tool](folder).status
    for _ in range(repeats):
        for tool in tools:
            outcome = calls[tool](folder)
            times[tool].append(outcome.seconds)
            status[tool] = outcome.status
    return {
        "bytes": total,
        "files": sum(1 for p in folder.rglob("*") if p.is_file()),
        "seconds": times,
        "median_s": {t: statistics.median(v) for t, v in times.items()},
        "mb_per_s": {t: total / MB / statistics.median(v) for t, v in times.items()},
        "status": status,
    }


def latency(runner: Runner, files: list[Path], tools: list[str]) -> dict[str, Any]:
    calls = runner.tools()
    warm(files)
    for tool in tools:
        calls[tool](files[0])
    per_tool: dict[str, list[float]] = {tool: [] for tool in tools}
    statuses: dict[str, dict[str, int]] = {tool: {} for tool in tools}
    for path in files:
        for tool in tools:
            outcome = calls[tool](path)
            per_tool[tool].append(outcome.seconds)
            statuses[tool][outcome.status] = statuses[tool].get(outcome.status, 0) + 1
    return {
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "median_s": {t: statistics.median(v) for t, v in per_tool.items()},
        "p90_s": {t: sorted(v)[int(0.9 * (len(v) - 1))] for t, v in per_tool.items()},
        "status": statuses,
    }


def build_tiny_files(folder: Path) -> list[Path]:
    """A tiny benign pickle and a tiny safetensors file: what start-up costs, not the scan itself."""
    folder.mkdir(parents=True, exist_ok=True)
    pickled = folder / "tiny.pkl"
    pickled.write_bytes(pickle.dumps({"weight": [0.5, -1.25, 2.0], "step": 3}, protocol=4))
    header = json.dumps({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)
    tensors = folder / "tiny.safetensors"
    tensors.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
    return [pickled, tensors]


def startup_commands(runner: Runner, path: Path) -> dict[str, list[str]]:
    """The start-up contenders on one file, each a fresh process; the bare interpreters are the floor."""
    modelgate = str(REPO / ".venv/bin/modelgate")
    return {
        "modelgate scan": [modelgate, "scan", str(path)],
        "modelgate scan --json": [modelgate, "scan", str(path), "--json"],
        "picklescan -p": [str(runner.bin / "picklescan"), "-p", str(path)],
        "python -c pass (modelgate venv)": [str(REPO / ".venv/bin/python"), "-c", "pass"],
        "python -c pass (peers venv)": [str(runner.bin / "python"), "-c", "pass"],
    }


def startup(runner: Runner, files: list[Path], repeats: int) -> dict[str, Any]:
    """Median wall time per command and file, runs alternating between the tools so drift hits both."""
    seconds: dict[str, dict[str, list[float]]] = {}
    exits: dict[str, dict[str, int | None]] = {}
    for path in files:
        commands = startup_commands(runner, path)
        for cmd in commands.values():  # untimed warm-up: page cache, .pyc files
            runner._run(cmd, runner.env)
        seconds[path.name] = {name: [] for name in commands}
        exits[path.name] = {}
        for _ in range(repeats):
            for name, cmd in commands.items():
                code, _out, _err, took = runner._run(cmd, runner.env if "picklescan" in name else runner.mg_env)
                seconds[path.name][name].append(took)
                exits[path.name][name] = code
    median = {f: {n: statistics.median(v) for n, v in per.items()} for f, per in seconds.items()}
    ratio = {
        f: {
            "modelgate scan": per["modelgate scan"] / per["picklescan -p"],
            "modelgate scan --json": per["modelgate scan --json"] / per["picklescan -p"],
        }
        for f, per in median.items()
    }
    return {
        "repeats": repeats,
        "median_s": median,
        "min_s": {f: {n: min(v) for n, v in per.items()} for f, per in seconds.items()},
        "exit": exits,
        "ratio_to_picklescan": ratio,
    }


def startup_table(st: dict[str, Any]) -> list[str]:
    out = [
        "",
        f"### Start-up: one tiny file per process, median of {st['repeats']} alternating runs",
        "",
        "| file | command | median ms | min ms | exit | x picklescan |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for file, per in st["median_s"].items():
        for name, median in per.items():
            ratio = st["ratio_to_picklescan"][file].get(name)
            cell = f"{ratio:.2f}" if ratio is not None else ""
            out.append(
                f"| {file} | `{name}` | {median * 1000:.0f} | {st['min_s'][file][name] * 1000:.0f} "
                f"| {st['exit'][file][name]} | {cell} |"
            )
    return out


def startup_goal(st: dict[str, Any]) -> tuple[str, bool, str]:
    """``modelgate scan FILE`` answers within picklescan's time on every tiny file, and says safe."""
    ratios = {f: r["modelgate scan"] for f, r in st["ratio_to_picklescan"].items()}
    exits_ok = all(e["modelgate scan"] == 0 and e["picklescan -p"] == 0 for e in st["exit"].values())
    met = exits_ok and all(r <= 1.0 for r in ratios.values())
    median = st["median_s"]
    why = ", ".join(
        f"{f}: {median[f]['modelgate scan'] * 1000:.0f} ms vs {median[f]['picklescan -p'] * 1000:.0f} ms ({r:.2f}x)"
        for f, r in ratios.items()
    )
    return ("starts within picklescan's time", met, why + ("" if exits_ok else "; a run did not exit 0"))


# ---------------------------------------------------------------- report


def verdict_cell(status: str, malicious: bool) -> str:
    if malicious:
        return {"flagged": "detected", "clean": "**missed**", "skipped": "**missed** (not scanned)"}.get(
            status, f"**missed** ({status})"
        )
    return {"clean": "ok", "flagged": "**FP**", "skipped": "not scanned"}.get(status, status)


def column_status(row: dict[str, Any], column: str) -> str:
    """A tool's status on a sample; 'modelaudit (critical only)' counts only its critical issues."""
    if column == "modelaudit (critical only)":
        base = row["outcomes"]["modelaudit"]
        if base["status"] == "flagged":
            return "flagged" if base.get("critical") else "clean"
        return str(base["status"])
    return str(row["outcomes"][column]["status"])


def tables(result: dict[str, Any]) -> str:
    rows, tools = result["detection"], result["detection_tools"]
    columns = [*tools]
    if "modelaudit" in tools:
        columns.insert(columns.index("modelaudit") + 1, "modelaudit (critical only)")
    out = ["### Detection per sample", "", "| technique | sample | " + " | ".join(columns) + " |"]
    out.append("|---|---|" + "---|" * len(columns))
    for row in rows:
        cells = [verdict_cell(column_status(row, column), row["malicious"]) for column in columns]
        kind = "malicious" if row["malicious"] else "benign"
        out.append(f"| {row['technique']} ({kind}) | `{row['path']}` | " + " | ".join(cells) + " |")
    malicious = [r for r in rows if r["malicious"]]
    benign = [r for r in rows if not r["malicious"]]
    out += [
        "",
        "### Detection summary",
        "",
        f"{len(malicious)} malicious and {len(benign)} benign samples. 'Fail-closed' also counts a scanner error "
        "on a malicious sample as a block, as a gate that refuses on errors would.",
        "",
        "| tool | malicious detected | detected, fail-closed | benign: false positives | benign: errors "
        "| benign: not scanned |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for column in columns:
        statuses_m = [column_status(r, column) for r in malicious]
        statuses_b = [column_status(r, column) for r in benign]
        out.append(
            f"| {column} | {statuses_m.count('flagged')}/{len(malicious)} "
            f"| {sum(s in ('flagged', 'error', 'timeout') for s in statuses_m)}/{len(malicious)} "
            f"| {statuses_b.count('flagged')}/{len(benign)} "
            f"| {sum(s in ('error', 'timeout') for s in statuses_b)}/{len(benign)} "
            f"| {statuses_b.count('skipped')}/{len(benign)} |"
        )
    tp = result["throughput"]
    out += [
        "",
        f"### Throughput: {tp['files']} benign checkpoints, {tp['bytes'] / GB:.2f} GB, "
        f"median of {result['repeats']} alternating runs, page cache warm",
        "",
        "| tool | median s | MB/s | verdict on the benign checkpoints |",
        "|---|---:|---:|---|",
    ]
    for tool in tp["median_s"]:
        out.append(f"| {tool} | {tp['median_s'][tool]:.2f} | {tp['mb_per_s'][tool]:.0f} | {tp['status'][tool]} |")
    per_core, cores = result["sha256_per_core_mb_s"], result["cores"]
    bound_s = tp["bytes"] / MB / (per_core * cores)
    out.append(
        f"| (bound) sha256 of every byte, {cores} cores x {per_core} MB/s | {bound_s:.2f} | {per_core * cores} | |"
    )
    lat = result["latency"]
    out += [
        "",
        f"### Per-file latency: {lat['files']} small checkpoints ({lat['bytes'] / lat['files'] / 1000:.0f} kB on "
        "average), one process per file for CLIs",
        "",
        "| tool | median ms | p90 ms | verdicts |",
        "|---|---:|---:|---|",
    ]
    for tool in lat["median_s"]:
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(lat["status"][tool].items()))
        out.append(f"| {tool} | {lat['median_s'][tool] * 1000:.0f} | {lat['p90_s'][tool] * 1000:.0f} | {verdicts} |")
    if "startup" in result:
        out += startup_table(result["startup"])
    out += ["", "### Goals", ""]
    out += [f"- {name}: **{'met' if ok else 'NOT met'}** ({why})" for name, ok, why in result["goals"]]
    return "\n".join(out)


def goals(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    rows = result["detection"]
    missed = [r["path"] for r in rows if r["malicious"] and r["outcomes"]["modelgate"]["status"] != "flagged"]
    fps = [r["path"] for r in rows if not r["malicious"] and r["outcomes"]["modelgate"]["status"] != "clean"]
    tp, lat = result["throughput"], result["latency"]
    if tp["status"].get("modelgate") != "clean":
        fps.append(f"benign checkpoints ({tp['status'].get('modelgate')})")
    if lat["status"]["modelgate"].get("clean", 0) != lat["files"]:
        fps.append(f"small files ({lat['status']['modelgate']})")
    out = [
        ("every malicious sample detected", not missed, "missed: " + ", ".join(missed) if missed else "all"),
        ("no false positive", not fps, "on: " + ", ".join(fps) if fps else "none"),
    ]
    if "picklescan" in tp["mb_per_s"]:
        ours, theirs = tp["mb_per_s"]["modelgate"], tp["mb_per_s"]["picklescan"]
        cli, hashed = tp["mb_per_s"].get("modelgate-cli"), tp["mb_per_s"].get("modelgate+sha256")
        ratio_cli = f", CLI {cli / theirs:.2f}x" if cli else ""
        ratio_cli += f", scan plus its own sha256 {hashed / theirs:.2f}x" if hashed else ""
        out.append(
            (
                ">= 2x picklescan's throughput",
                ours >= 2 * theirs,
                f"modelgate {ours:.0f} MB/s vs picklescan {theirs:.0f} MB/s: "
                f"{ours / theirs:.2f}x in-process{ratio_cli}",
            )
        )
    if "modelaudit" in lat["median_s"] and "modelgate-cli" in lat["median_s"]:
        ours, theirs = lat["median_s"]["modelgate-cli"], lat["median_s"]["modelaudit"]
        out.append(
            (
                "faster than modelaudit per file",
                ours < theirs,
                f"modelgate CLI {ours * 1000:.0f} ms vs modelaudit {theirs * 1000:.0f} ms median "
                f"(in-process {lat['median_s']['modelgate'] * 1000:.1f} ms)",
            )
        )
    if "startup" in result:
        out.append(startup_goal(result["startup"]))
    return out


def versions(peers_venv: Path) -> dict[str, str]:
    names = json.dumps(list(PEERS))
    code = f"import importlib.metadata as m, json; print(json.dumps({{n: m.version(n) for n in {names}}}))"
    out = subprocess.run([str(peers_venv / "bin/python"), "-c", code], capture_output=True, text=True, check=True)
    found: dict[str, str] = json.loads(out.stdout)
    import importlib.metadata as metadata

    found["modelgate"] = metadata.version("modelgate")
    for name in ("torch", "safetensors"):
        found[name] = metadata.version(name)
    return found


def sha256_per_core(repeats: int = 5) -> float:
    """Bytes/s of one core hashing a 256 MiB in-memory buffer in 1 MiB updates (best of ``repeats``)."""
    import hashlib

    data = memoryview(os.urandom(256 << 20))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        hasher = hashlib.sha256()
        for offset in range(0, len(data), 1 << 20):
            hasher.update(data[offset : offset + (1 << 20)])
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/modelgate-bench-scan"), help="Inputs (reused).")
    parser.add_argument("--size-gb", type=float, default=1.1, help="Benign checkpoints for throughput (GB).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed throughput runs per tool.")
    parser.add_argument("--small-files", type=int, default=50, help="Files for the per-file latency.")
    parser.add_argument("--peers-venv", type=Path, default=REPO / ".venv-peers-scan")
    parser.add_argument("--timeout", type=float, default=1800, help="Per tool invocation (s).")
    parser.add_argument("--skip", default="", help="Comma-separated tools to leave out.")
    parser.add_argument("--json-out", type=Path, help="Append the JSON result line to this file.")
    parser.add_argument("--markdown-out", type=Path, help="Write the markdown tables to this file.")
    parser.add_argument("--startup", action="store_true", help="Only the start-up comparison with picklescan.")
    parser.add_argument("--startup-repeats", type=int, default=20, help="Timed runs per command and tiny file.")
    args = parser.parse_args()

    if not (args.peers_venv / "bin/python").exists():
        print(f"{args.peers_venv} is missing: run bench/setup_peers_scan.sh", file=sys.stderr)
        return 2
    skip = {s for s in args.skip.split(",") if s}
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=args.dir))
    runner = Runner(args.peers_venv, work, args.timeout)
    tools = [t for t in runner.tools() if t not in skip]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    if args.startup:
        return startup_only(args, runner, work, started, load_before)

    corpus_dir = work / "corpus"
    print("detection ...", file=sys.stderr)
    rows = detection(runner, corpus_dir, [t for t in tools if t != "modelgate+sha256"])
    print("throughput ...", file=sys.stderr)
    checkpoints = build_checkpoints(args.dir, args.size_gb)
    tp = throughput(runner, checkpoints, tools, max(1, args.repeats))
    print("latency ...", file=sys.stderr)
    small = build_small_files(args.dir, args.small_files)
    lat = latency(runner, small, tools)
    print("start-up ...", file=sys.stderr)
    st = startup(runner, build_tiny_files(work / "tiny"), max(1, args.startup_repeats))

    result: dict[str, Any] = {
        **machine_info(started, args.peers_venv),
        "repeats": max(1, args.repeats),
        "detection_tools": [t for t in tools if t not in ("modelgate-cli", "modelgate+sha256")],
        "sha256_per_core_mb_s": round(sha256_per_core() / MB),
        "detection": rows,
        "throughput": tp,
        "latency": lat,
        "startup": st,
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    cli_agrees = all(
        r["outcomes"].get("modelgate-cli", r["outcomes"]["modelgate"])["status"] == r["outcomes"]["modelgate"]["status"]
        for r in rows
    )
    result["modelgate_cli_agrees"] = cli_agrees
    result["goals"] = goals(result)
    emit(result, tables(result), args)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def machine_info(started: datetime, peers_venv: Path) -> dict[str, Any]:
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {cpu_name()}",
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(peers_venv),
    }


def startup_only(
    args: argparse.Namespace, runner: Runner, work: Path, started: datetime, load_before: tuple[float, float, float]
) -> int:
    """``--startup``: the start-up comparison alone (no torch, no corpus), same output conventions."""
    print("start-up ...", file=sys.stderr)
    st = startup(runner, build_tiny_files(work / "tiny"), max(1, args.startup_repeats))
    result: dict[str, Any] = {
        **machine_info(started, args.peers_venv),
        "startup": st,
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    goal = startup_goal(st)
    result["goals"] = [goal]
    name, ok, why = goal
    markdown = "\n".join([*startup_table(st), "", f"- {name}: **{'met' if ok else 'NOT met'}** ({why})"])
    emit(result, markdown.lstrip("\n"), args)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def emit(result: dict[str, Any], markdown: str, args: argparse.Namespace) -> None:
    print(markdown)
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(markdown + "\n")


if __name__ == "__main__":
    sys.exit(main())
