"""Child-process entry point of the safe loader: load one checkpoint, write its tensors as safetensors.

Run only by ``modelgate.scan.loader`` as ``python -I _load_child.py REQUEST.json``. It imports
nothing from modelgate (isolated mode puts neither the working directory nor the script's folder
on ``sys.path``), so the only code that runs here is the standard library, torch and safetensors.

Order matters, and each step is recorded in the result so the evidence can say what was enforced:

1. a new network namespace (``unshare(CLONE_NEWNET)``; as non-root, a user namespace with it),
   before any thread exists; if the kernel refuses, the load goes on and the result says so;
2. RLIMIT_CORE 0 and RLIMIT_CPU from the start, so the torch import counts too;
3. import torch, then RLIMIT_AS and RLIMIT_FSIZE at the address space already in use plus the
   caller's cap: the cap bounds what the load itself may map, not the interpreter and torch;
4. the only ``weights_only=True`` load in modelgate, then the tensors go out as a safetensors file
   (never pickled back across the process boundary), with a JSON result next to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MAX_LISTED_SKIPPED = 50


class Refusal(Exception):
    """The checkpoint loaded but cannot become a flat dict of tensors."""


def isolate_network() -> tuple[bool, str]:
    """(isolated, description): enter a network namespace that has no interface up, not even loopback."""
    if platform.system() != "Linux":
        return False, f"network namespace: unavailable ({platform.system()}), relying on weights_only + scan"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return True, "network namespace: new, no interfaces up"
    first = ctypes.get_errno()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return True, "network namespace: new (inside a new user namespace), no interfaces up"
    name = os.strerror(first) if first else "unknown error"
    code = {1: "EPERM", 22: "EINVAL", 12: "ENOMEM", 28: "ENOSPC", 38: "ENOSYS"}.get(first, name)
    return False, f"network namespace: unavailable ({code}), relying on weights_only + scan"


def probe(port: int) -> str:
    """Diagnostic for the tests: can this process reach 127.0.0.1:port?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"
    except OSError as exc:
        return f"blocked: {exc}"


def vm_size() -> int:
    """Bytes of address space in use now (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def set_limit(which: int, soft: int, hard: int | None = None) -> None:
    """Lower a limit; a limit can only go down, so keep the current hard limit when it is lower."""
    _, current_hard = resource.getrlimit(which)
    wanted = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        wanted = min(wanted, current_hard)
        soft = min(soft, current_hard)
    resource.setrlimit(which, (soft, wanted))


def flatten(obj: Any, torch: Any, select: str | None) -> tuple[dict[str, Any], list[str]]:
    """Every tensor under nested dicts/lists/tuples as ``a.b.c`` keys; non-tensor leaves are listed, not kept."""
    tensors: dict[str, Any] = {}
    skipped: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, torch.Tensor):
            if key in tensors:
                raise Refusal(f"two tensors flatten to the same key '{key}'")
            tensors[key] = node
        elif isinstance(node, dict):
            for name, child in node.items():
                walk(child, f"{key}.{name}" if key else str(name))
        elif isinstance(node, list | tuple):
            for index, child in enumerate(node):
                walk(child, f"{key}.{index}" if key else str(index))
        else:
            skipped.append(key or "<top level>")

    if isinstance(obj, torch.Tensor):
        raise Refusal("the checkpoint is a single tensor, not a state dict")
    walk(obj, "")
    if select:
        prefix = select + "."
        chosen = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not chosen:
            raise Refusal(f"no tensor under '{select}' (top-level keys: {top_keys(obj)})")
        return chosen, skipped
    return tensors, skipped


def top_keys(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(str(k) for k in list(obj)[:10]) or "none"
    return type(obj).__name__


def prepare_for_save(tensors: dict[str, Any], torch: Any) -> dict[str, Any]:
    """Dense, contiguous, detached tensors that share no storage (safetensors refuses shared storage)."""
    seen: set[int] = set()
    ready: dict[str, Any] = {}
    for key, tensor in tensors.items():
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise Refusal(f"tensor '{key}' is {tensor.layout} / quantized: safetensors holds dense tensors only")
        value = tensor.detach()
        storage = value.untyped_storage().data_ptr() if value.numel() else 0
        if storage and storage in seen:
            value = value.clone()
        elif storage:
            seen.add(storage)
        ready[key] = value.contiguous()
    return ready


def is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("can't allocate memory", "cannot allocate memory", "bad_alloc", "out of memory"))


def clean_message(exc: BaseException) -> str:
    """One line; torch's weights_only error keeps only its reason, not its advice to reload unsafely."""
    text = str(exc)
    if text.startswith("Weights only load failed"):
        parts = [p.strip() for p in text.split("\n\n") if p.strip()]
        kept = [p for p in parts[1:] if not p.startswith("Check the documentation")]
        kept = [p.split("WeightsUnpickler error:")[-1].strip() for p in kept]
        text = "weights_only rejected it: " + "; ".join(p for p in kept if p)
    return " ".join(text.split())[:400]


def main(request_path: str) -> int:
    start = time.monotonic()
    request = json.loads(Path(request_path).read_text())
    result_path = Path(request["result"])
    result: dict[str, Any] = {"ok": False, "stdin": "closed", "env": sorted(os.environ)}

    def finish(code: int) -> int:
        result["child_duration_s"] = round(time.monotonic() - start, 4)
        result_path.write_text(json.dumps(result))
        return code

    sys.stdin.close()
    with contextlib.suppress(OSError):
        os.close(0)
    if request["isolate_network"]:
        result["network_namespace"], result["network"] = isolate_network()
    else:
        result["network_namespace"], result["network"] = False, "network: not isolated (allow_network=True)"
    if request.get("probe_port"):
        result["network_probe"] = probe(int(request["probe_port"]))

    cpu = int(request["cpu_seconds"])
    set_limit(resource.RLIMIT_CORE, 0)
    set_limit(resource.RLIMIT_CPU, cpu, cpu + 2)
    result["rlimit_cpu_s"] = cpu

    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    baseline = vm_size()
    cap = baseline + int(request["max_memory_bytes"])
    set_limit(resource.RLIMIT_AS, cap)
    set_limit(resource.RLIMIT_FSIZE, cap)
    result.update(rlimit_as_bytes=cap, rlimit_fsize_bytes=cap, baseline_vm_bytes=baseline)

    try:
        obj = torch.load(request["source"], weights_only=True, map_location="cpu", mmap=request["mmap"])
        tensors, skipped = flatten(obj, torch, request.get("select"))
        del obj
        ready = prepare_for_save(tensors, torch)
        save_file(ready, request["output"])
    except Refusal as exc:
        result.update(kind="unsupported", message=str(exc))
        return finish(3)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent as a reason
        kind = "memory" if is_memory_error(exc) else "error"
        result.update(kind=kind, message=f"{type(exc).__name__}: {clean_message(exc)}")
        return finish(4 if kind == "memory" else 3)
    result.update(
        ok=True,
        tensors=len(ready),
        tensor_bytes=sum(t.numel() * t.element_size() for t in ready.values()),
        skipped_non_tensor=skipped[:MAX_LISTED_SKIPPED],
        skipped_non_tensor_count=len(skipped),
        torch_version=torch.__version__,
    )
    return finish(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
