"""The safe loading path: the only way an evaluation may read model weights.

A file is loaded only if the scan report lists it (same path relative to the scanned root) with
verdict ``safe`` and a sha256 that still matches its bytes. The bytes are hashed while they are
copied into a private temporary folder, and only that copy is loaded, so the file cannot change
between the check and the load.

- safetensors: loaded in this process with ``safetensors.torch.load_file`` (the format has no code
  to run; the scan already checked its header, dtypes and offsets);
- PyTorch checkpoints (zip or legacy): loaded by ``_load_child.py`` in a child process with
  ``weights_only=True``, no network (a new network namespace where the kernel allows it), rlimits
  on address space, file size and CPU time, a wall-clock timeout, a minimal environment and no
  stdin. The child hands the tensors back as a safetensors file, never as a pickle.

Nested checkpoints (``{'state_dict': {...}, 'optimizer': {...}}``) are flattened: every tensor
under nested dicts, lists and tuples becomes one ``a.b.c`` key; non-tensor leaves (epoch numbers,
hyper-parameters) are dropped and listed in the record. ``select='state_dict'`` keeps only that
subtree, with the prefix removed.

torch and safetensors are imported inside the functions: importing modelgate stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from modelgate.errors import ModelgateError
from modelgate.scan.findings import BLOCKING, FileReport, ScanReport

if TYPE_CHECKING:
    import torch

GIB = 1024**3
DEFAULT_MAX_MEMORY_BYTES = 8 * GIB
DEFAULT_TIMEOUT_S = 600.0
CHILD_SCRIPT = Path(__file__).with_name("_load_child.py")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
COPY_CHUNK = 8 * 1024 * 1024
STDERR_TAIL = 600

SAFETENSORS = "safetensors"
PYTORCH_ZIP = "pytorch-zip"
PYTORCH_LEGACY = "pytorch-legacy"


class LoadRefused(ModelgateError):
    """A weight file was not loaded: not scanned, not safe, changed since the scan, or the load failed."""


class LoadRecord(BaseModel):
    """What was enforced while one file was loaded, for the evaluation evidence."""

    file: str = Field(description="Path relative to the scanned root.")
    sha256: str = Field(description="'sha256:<hex>' of the bytes loaded (equal to the scan's).")
    format: str = Field(description="safetensors, pytorch-zip or pytorch-legacy (by content).")
    mode: str = Field(description="'in-process' (safetensors) or 'child-process' (weights_only=True).")
    weights_only: bool | None = None
    mmap: bool | None = None
    network_namespace: bool = False
    network: str = Field(description="The network isolation in force, in words.")
    memory_cap_bytes: int = Field(description="The caller's cap on what the load may allocate.")
    rlimit_as_bytes: int | None = Field(default=None, description="RLIMIT_AS set in the child (baseline + cap).")
    rlimit_fsize_bytes: int | None = None
    rlimit_cpu_s: int | None = None
    timeout_s: float | None = None
    env: list[str] = Field(default_factory=list, description="Names of the environment variables the child saw.")
    stdin: str | None = None
    tensors: int = 0
    tensor_bytes: int = 0
    skipped_non_tensor: list[str] = Field(default_factory=list, description="Non-tensor leaves dropped (first 50).")
    skipped_non_tensor_count: int = 0
    select: str | None = None
    duration_s: float = 0.0
    network_probe: str | None = Field(default=None, description="Diagnostic for tests: 127.0.0.1 reachability.")


@dataclass
class LoadResult:
    tensors: dict[str, torch.Tensor]
    record: LoadRecord


@dataclass
class ConversionResult:
    files: list[Path] = field(default_factory=list)
    records: list[LoadRecord] = field(default_factory=list)


def safe_load_state_dict(
    path: Path,
    report: ScanReport,
    *,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_network: bool = False,
    select: str | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of one scanned, safe weight file (see ``safe_load`` for the record of what was enforced)."""
    return safe_load(
        path,
        report,
        max_memory_bytes=max_memory_bytes,
        timeout_s=timeout_s,
        allow_network=allow_network,
        select=select,
    ).tensors


def safe_load(
    path: Path,
    report: ScanReport,
    *,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_network: bool = False,
    select: str | None = None,
    network_probe_port: int | None = None,
) -> LoadResult:
    """Load one weight file the scan passed; raise ``LoadRefused`` with a one-line reason otherwise.

    ``network_probe_port`` is a diagnostic for the tests only: the child tries to connect to
    127.0.0.1 on that port after isolating itself and records whether it could.
    """
    start = time.monotonic()
    rel, entry = _check_report(Path(path), report)
    with tempfile.TemporaryDirectory(prefix="modelgate-load-") as tmp_name:
        tmp = Path(tmp_name)
        copy = tmp / "input"
        digest = _copy_and_hash(_absolute(Path(path), report), copy, rel)
        expected = _normalize_digest(entry.sha256 or "")
        if digest != expected:
            raise LoadRefused(f"{rel}: refused: its sha256 changed since the scan ({expected[:19]}… → {digest[:19]}…)")
        kind = _sniff(copy)
        if kind is None:
            raise LoadRefused(
                f"{rel}: refused: not a safetensors file or a PyTorch checkpoint (scanned as '{entry.format}')"
            )
        if entry.format != kind:
            raise LoadRefused(f"{rel}: refused: the scan read it as '{entry.format}', its bytes start like '{kind}'")
        if kind == SAFETENSORS:
            tensors, record = _load_safetensors(copy, rel, digest, max_memory_bytes, select)
        else:
            tensors, record = _load_in_child(
                copy, tmp, rel, digest, kind, max_memory_bytes, timeout_s, allow_network, select, network_probe_port
            )
    record.duration_s = round(time.monotonic() - start, 4)
    return LoadResult(tensors=tensors, record=record)


def convert_to_safetensors(
    model_dir: Path,
    report: ScanReport,
    out_dir: Path,
    *,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_network: bool = False,
) -> list[Path]:
    """Every weight file of ``model_dir`` as safetensors in ``out_dir`` (see ``convert_model`` for the records)."""
    return convert_model(
        model_dir, report, out_dir, max_memory_bytes=max_memory_bytes, timeout_s=timeout_s, allow_network=allow_network
    ).files


def convert_model(
    model_dir: Path,
    report: ScanReport,
    out_dir: Path,
    *,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allow_network: bool = False,
) -> ConversionResult:
    """Convert every weight file (recognised by content) so that evaluations read only safetensors.

    Output names keep the folder structure: ``x.safetensors`` stays ``x.safetensors``, other
    weights become ``<stem>.safetensors`` (``pytorch_model.bin`` → ``pytorch_model.safetensors``),
    or ``<name>.safetensors`` when the stem is taken. Any weight file the scan did not pass refuses
    the whole conversion: a partial model must not reach an evaluation.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise LoadRefused(f"{model_dir}: refused: not a folder")
    weights = [p for p in sorted(model_dir.rglob("*")) if p.is_file() and _sniff(p) is not None]
    if not weights:
        raise LoadRefused(f"{model_dir}: refused: no safetensors file or PyTorch checkpoint in the folder")
    targets = _output_names([p.relative_to(model_dir) for p in weights])
    out_dir = Path(out_dir)
    result = ConversionResult()
    from safetensors.torch import save_file

    for source, target in zip(weights, targets, strict=True):
        loaded = safe_load(
            source, report, max_memory_bytes=max_memory_bytes, timeout_s=timeout_s, allow_network=allow_network
        )
        destination = out_dir / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        save_file(loaded.tensors, str(destination), metadata={"modelgate.source_sha256": loaded.record.sha256})
        result.files.append(destination)
        result.records.append(loaded.record)
    return result


def _output_names(rels: list[Path]) -> list[Path]:
    wanted = [rel if rel.suffix == ".safetensors" else rel.with_suffix(".safetensors") for rel in rels]
    names: list[Path] = []
    for rel, name in zip(rels, wanted, strict=True):
        if rel.suffix != ".safetensors" and wanted.count(name) > 1:
            name = rel.with_name(rel.name + ".safetensors")
        if name in names:
            raise LoadRefused(f"{rel}: refused: its safetensors name '{name}' is taken by another weight file")
        names.append(name)
    return names


def _absolute(path: Path, report: ScanReport) -> Path:
    root = Path(report.root)
    if path.is_absolute() or path.exists():
        return path
    return (root if root.is_dir() else root.parent) / path


def _check_report(path: Path, report: ScanReport) -> tuple[str, FileReport]:
    """(relative path, report entry) of a file the scan passed with a recorded digest, or refuse."""
    root = Path(report.root).resolve()
    target = _absolute(path, report).resolve()
    if root.is_file():
        rel = target.name if target == root else None
    else:
        try:
            rel = target.relative_to(root).as_posix()
        except ValueError:
            rel = None
    if rel is None:
        raise LoadRefused(f"{path}: refused: outside the scanned root {report.root}")
    entry = next((f for f in report.files if f.path == rel), None)
    if entry is None:
        raise LoadRefused(f"{rel}: refused: not in the scan report of {report.root}")
    if entry.verdict != "safe":
        blocking = [f for f in entry.findings if f.category in BLOCKING]
        why = ""
        if blocking:
            first = blocking[0]
            where = f" {first.global_name}" if first.global_name else ""
            why = f" ({len(blocking)} blocking findings, first: {first.rule_id}{where})"
        raise LoadRefused(f"{rel}: refused: the scan verdict is {entry.verdict}{why}")
    if not entry.sha256:
        raise LoadRefused(f"{rel}: refused: the scan report carries no sha256 for it")
    return rel, entry


def _normalize_digest(value: str) -> str:
    value = value.strip().lower()
    return value if value.startswith("sha256:") else f"sha256:{value}"


def _copy_and_hash(source: Path, destination: Path, rel: str) -> str:
    """Copy into the private folder and hash the very bytes copied: what is loaded is what was checked."""
    hasher = hashlib.sha256()
    buffer = memoryview(bytearray(COPY_CHUNK))
    try:
        with open(source, "rb", buffering=0) as src, open(destination, "xb", buffering=0) as dst:
            while n := src.readinto(buffer):
                hasher.update(buffer[:n])
                dst.write(buffer[:n])
    except OSError as exc:
        raise LoadRefused(f"{rel}: refused: cannot read it ({exc.strerror or exc})") from exc
    return "sha256:" + hasher.hexdigest()


def _sniff(path: Path) -> str | None:
    """safetensors, pytorch-zip, pytorch-legacy, or None: by content, never by name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return SAFETENSORS
    if head[:4] == b"PK\x03\x04":
        return PYTORCH_ZIP
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return PYTORCH_LEGACY
    return None


def _load_safetensors(
    copy: Path, rel: str, digest: str, max_memory_bytes: int, select: str | None
) -> tuple[dict[str, torch.Tensor], LoadRecord]:
    size = copy.stat().st_size
    if size > max_memory_bytes:
        raise LoadRefused(f"{rel}: refused: memory: {size} bytes of tensors exceed the {max_memory_bytes}-byte cap")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(copy))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoadRefused(f"{rel}: refused: safetensors could not read it ({_one_line(exc)})") from exc
    if select:
        prefix = select + "."
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not tensors:
            raise LoadRefused(f"{rel}: refused: no tensor under '{select}'")
    record = LoadRecord(
        file=rel,
        sha256=digest,
        format=SAFETENSORS,
        mode="in-process",
        network="n/a: safetensors holds no code, loaded in-process",
        memory_cap_bytes=max_memory_bytes,
        tensors=len(tensors),
        tensor_bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
        select=select,
    )
    return tensors, record


def child_env(home: Path) -> dict[str, str]:
    """The whole environment of the child: no credentials, tokens or proxies of the parent."""
    return {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "*",
    }


def _load_in_child(
    copy: Path,
    tmp: Path,
    rel: str,
    digest: str,
    kind: str,
    max_memory_bytes: int,
    timeout_s: float,
    allow_network: bool,
    select: str | None,
    probe_port: int | None,
) -> tuple[dict[str, torch.Tensor], LoadRecord]:
    home = tmp / "home"
    home.mkdir(mode=0o700)
    output, result_path, request_path = tmp / "tensors.safetensors", tmp / "result.json", tmp / "request.json"
    mmap = kind == PYTORCH_ZIP  # torch maps only zip checkpoints
    request = {
        "source": str(copy),
        "output": str(output),
        "result": str(result_path),
        "mmap": mmap,
        "isolate_network": not allow_network,
        "max_memory_bytes": int(max_memory_bytes),
        "cpu_seconds": max(1, math.ceil(timeout_s)),
        "select": select,
        "probe_port": probe_port,
    }
    request_path.write_text(json.dumps(request))
    env = child_env(home)
    stderr_path = tmp / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-I", str(CHILD_SCRIPT), str(request_path)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=env,
            cwd=home,
            close_fds=True,
            start_new_session=True,
        )
        try:
            code = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LoadRefused(f"{rel}: refused: the load did not finish within the {timeout_s:g} s timeout") from None
        finally:
            if child.poll() is None:  # timed out, or this thread was interrupted: never leave it running
                _kill(child)
    result: dict[str, Any] = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if code != 0 or not result.get("ok"):
        raise LoadRefused(f"{rel}: refused: {_failure(code, result, stderr_path, max_memory_bytes)}")
    from safetensors.torch import load_file

    tensors = load_file(str(output))
    record = LoadRecord(
        file=rel,
        sha256=digest,
        format=kind,
        mode="child-process",
        weights_only=True,
        mmap=mmap,
        network_namespace=bool(result.get("network_namespace")),
        network=str(result.get("network", "")),
        memory_cap_bytes=max_memory_bytes,
        rlimit_as_bytes=result.get("rlimit_as_bytes"),
        rlimit_fsize_bytes=result.get("rlimit_fsize_bytes"),
        rlimit_cpu_s=result.get("rlimit_cpu_s"),
        timeout_s=timeout_s,
        env=[str(name) for name in result.get("env", [])],
        stdin=result.get("stdin"),
        tensors=len(tensors),
        tensor_bytes=int(result.get("tensor_bytes", 0)),
        skipped_non_tensor=list(result.get("skipped_non_tensor", [])),
        skipped_non_tensor_count=int(result.get("skipped_non_tensor_count", 0)),
        select=select,
        network_probe=result.get("network_probe"),
    )
    return tensors, record


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group (it runs in its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _failure(code: int, result: dict[str, Any], stderr_path: Path, cap: int) -> str:
    """One line saying why the child did not deliver tensors."""
    if result.get("kind") == "memory":
        return f"memory: the load needs more than the {cap}-byte cap ({result.get('message', '')})"
    if result.get("kind") == "unsupported":
        return str(result.get("message", "not a state dict"))
    if result.get("kind"):
        return f"the checkpoint could not be loaded with weights_only=True ({result.get('message', '')})"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = {
            "SIGXCPU": "CPU time limit reached",
            "SIGKILL": "killed (out of memory?)",
            "SIGSEGV": f"crashed (memory cap {cap} bytes?)",
            "SIGABRT": f"aborted (memory cap {cap} bytes?)",
        }.get(name, "crashed")
        return f"the loader process died of {name}: {why}"
    tail = stderr_path.read_bytes()[-STDERR_TAIL:].decode(errors="replace") if stderr_path.is_file() else ""
    last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
    return f"the loader process exited with status {code} ({last})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


__all__ = [
    "ConversionResult",
    "LoadRecord",
    "LoadRefused",
    "LoadResult",
    "child_env",
    "convert_model",
    "convert_to_safetensors",
    "safe_load",
    "safe_load_state_dict",
]
