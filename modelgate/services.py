"""Embedded services of the one-machine install (SeaweedFS S3, Prefect server).

Driven by ``infra/local/services.yaml``. Each service runs in its own process
session, binds to 127.0.0.1, keeps its data under ``$MODELGATE_HOME/services``
and is recorded in a state file, so ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelgate.errors import ServiceError
from modelgate.settings import Settings, load_settings, port

DEFAULT_S3_ACCESS_KEY = "modelgate-admin"
DEFAULT_S3_SECRET_KEY = "modelgate-admin-secret"  # noqa: S105 - local embedded default, overridable
# Registry identities of the embedded S3 server (infra/local/s3-identities.json): local defaults, overridable.
DEFAULT_S3_IDENTITIES = {
    "publisher": ("modelgate-publisher", "modelgate-publisher-secret"),
    "consumer": ("modelgate-consumer", "modelgate-consumer-secret"),
}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    description: str
    port: int
    ports: dict[str, int]
    command: list[str]
    health: str
    env: dict[str, str] = field(default_factory=dict)
    grpc_port_offset: int = 0
    files: dict[str, str] = field(default_factory=dict)
    autostart: bool = True  # False: `up` without names leaves it out (started by its own command)
    min_free_mb: int = 0  # free disk its data folder needs to start (SeaweedFS cannot assign volumes on a full one)


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int
    port: int
    url: str
    started_at: float
    log: str
    command: list[str]


def config_path(settings: Settings) -> Path:
    return settings.project / "infra" / "local" / "services.yaml"


def s3_credentials() -> tuple[str, str]:
    """The embedded S3 server's admin identity (override with MODELGATE_S3_ACCESS_KEY/SECRET_KEY)."""
    return (
        os.environ.get("MODELGATE_S3_ACCESS_KEY", DEFAULT_S3_ACCESS_KEY),
        os.environ.get("MODELGATE_S3_SECRET_KEY", DEFAULT_S3_SECRET_KEY),
    )


def s3_identity(role: str) -> tuple[str, str]:
    """A registry identity of the embedded S3 server (override: MODELGATE_S3_<ROLE>_ACCESS_KEY/SECRET_KEY)."""
    access, secret = DEFAULT_S3_IDENTITIES[role]
    prefix = f"MODELGATE_S3_{role.upper()}_"
    return os.environ.get(prefix + "ACCESS_KEY", access), os.environ.get(prefix + "SECRET_KEY", secret)


def load_specs(settings: Settings | None = None) -> dict[str, ServiceSpec]:
    """Read the service definitions, applying MODELGATE_<NAME>_PORT overrides."""
    settings = settings or load_settings()
    path = config_path(settings)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ServiceError(f"{path}: service definitions not found") from exc
    except yaml.YAMLError as exc:
        raise ServiceError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from exc
    specs: dict[str, ServiceSpec] = {}
    for name, body in (raw or {}).get("services", {}).items():
        specs[name] = ServiceSpec(
            name=name,
            description=str(body.get("description", "")),
            port=port(f"MODELGATE_{name.upper()}_PORT", int(body["port"])),
            ports={k: int(v) for k, v in (body.get("ports") or {}).items()},
            command=[str(a) for a in body["command"]],
            health=str(body["health"]),
            env={str(k): str(v) for k, v in (body.get("env") or {}).items()},
            grpc_port_offset=int(body.get("grpc_port_offset", 0)),
            files={str(k): str(v) for k, v in (body.get("files") or {}).items()},
            autostart=bool(body.get("autostart", True)),
            min_free_mb=int(body.get("min_free_mb", 0)),
        )
    return specs


def _render(template: str, spec: ServiceSpec, data_dir: Path) -> str:
    access, secret = s3_credentials()
    (publisher_access, publisher_secret), (consumer_access, consumer_secret) = map(s3_identity, DEFAULT_S3_IDENTITIES)
    values: dict[str, Any] = {
        "bin": str(Path(sys.executable).parent),
        "data": str(data_dir),
        "port": spec.port,
        "ports": _Ports(spec.ports),
        "s3_access_key": access,
        "s3_secret_key": secret,
        "s3_publisher_access_key": publisher_access,
        "s3_publisher_secret_key": publisher_secret,
        "s3_consumer_access_key": consumer_access,
        "s3_consumer_secret_key": consumer_secret,
        "registry_bucket": os.environ.get("MODELGATE_REGISTRY_BUCKET") or "modelgate-registry",
    }
    return template.format(**values)


def render_json_file(source: Path, target: Path, spec: ServiceSpec, data_dir: Path) -> Path:
    """Render a JSON template (placeholders in its string values) to ``target``, mode 0600: it holds secrets."""
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{source}: cannot read the JSON template: {exc}") from exc

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _render(value, spec, data_dir)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(fill(document), handle, indent=2)
    return target


class _Ports:
    """Lets templates say ``{ports.master}``."""

    def __init__(self, ports: dict[str, int]) -> None:
        self._ports = ports

    def __getattr__(self, name: str) -> int:
        try:
            return self._ports[name]
        except KeyError as exc:
            raise ServiceError(f"services.yaml refers to unknown port {name!r}") from exc


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _state_file(settings: Settings, name: str) -> Path:
    return settings.services_dir / f"{name}.json"


def read_state(name: str, settings: Settings | None = None) -> ServiceState | None:
    """The recorded state of a service we started, if its process still runs."""
    settings = settings or load_settings()
    path = _state_file(settings, name)
    if not path.is_file():
        return None
    try:
        state = ServiceState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    return state if _is_ours(state) else None


def _is_ours(state: ServiceState) -> bool:
    """True when the pid is alive and still runs the command we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(state.pid, 0)
        except OSError:
            return False
        return True
    exe = Path(state.command[0]).name.encode()
    return any(exe in part for part in cmdline[:3])


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - loopback URL from our config
            return True
    except urllib.error.HTTPError:
        return True  # the server answered (S3 answers 403 to an anonymous GET /)
    except (urllib.error.URLError, OSError):
        return False


def start(name: str, *, settings: Settings | None = None, timeout_s: float = 90.0) -> ServiceState:
    """Start one service (idempotent: a running one is left alone)."""
    settings = settings or load_settings()
    spec = load_specs(settings)[name]
    if running := read_state(name, settings):
        return running
    ports = [spec.port, *spec.ports.values()]
    if spec.grpc_port_offset:  # e.g. SeaweedFS also listens on each port + 10000 for gRPC
        ports += [p + spec.grpc_port_offset for p in ports]
    if taken := [p for p in ports if _port_in_use(p)]:
        raise ServiceError(
            f"cannot start {name}: port {taken[0]} on 127.0.0.1 is taken by a process modelgate did not start "
            f"(stop it, or set MODELGATE_{name.upper()}_PORT / edit infra/local/services.yaml)"
        )
    data_dir = settings.services_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    _require_free_disk(spec, data_dir)
    for target, source in spec.files.items():
        render_json_file(settings.project / source, Path(_render(target, spec, data_dir)), spec, data_dir)
    command = [_render(arg, spec, data_dir) for arg in spec.command]
    env = {**os.environ, **{k: _render(v, spec, data_dir) for k, v in spec.env.items()}}
    log_path = settings.services_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argument list from our own config, no shell
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    url = _render(spec.health, spec, data_dir).rsplit("/api/health", 1)[0].rstrip("/")
    state = ServiceState(name, proc.pid, spec.port, url, time.time(), str(log_path), command)
    _state_file(settings, name).write_text(json.dumps(state.__dict__, indent=2))
    _wait_healthy(proc, _render(spec.health, spec, data_dir), log_path, name, timeout_s)
    return state


def _require_free_disk(spec: ServiceSpec, data_dir: Path) -> None:
    """Refuse to start on a nearly full disk: a storage server would start and then fail every write
    with a timeout that does not say why."""
    free_mb = shutil.disk_usage(data_dir).free // (1024 * 1024)
    if free_mb < spec.min_free_mb:
        raise ServiceError(
            f"cannot start {spec.name}: only {free_mb} MiB free on the disk of {data_dir} (it needs "
            f"{spec.min_free_mb} MiB); free some space, or set min_free_mb in infra/local/services.yaml"
        )


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-800:].strip().splitlines()
            raise ServiceError(f"{name} exited with code {proc.returncode}; last log line: {tail[-1] if tail else '-'}")
        if _healthy(url):
            return
        time.sleep(0.5)
    raise ServiceError(f"{name} did not become healthy at {url} within {timeout_s:.0f} s (log: {log_path})")


def stop(name: str, *, settings: Settings | None = None, timeout_s: float = 20.0) -> bool:
    """Stop a service this install started; returns False when it was not running."""
    settings = settings or load_settings()
    state = read_state(name, settings)
    _state_file(settings, name).unlink(missing_ok=True)
    if state is None:
        return False
    try:
        os.killpg(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(state.pid, 0)
        except ProcessLookupError:
            return True
        _reap(state.pid)
        time.sleep(0.2)
    os.killpg(state.pid, signal.SIGKILL)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def up(names: list[str] | None = None, settings: Settings | None = None) -> list[ServiceState]:
    settings = settings or load_settings()
    specs = load_specs(settings)
    return [start(name, settings=settings) for name in (names or [n for n, s in specs.items() if s.autostart])]


def down(names: list[str] | None = None, settings: Settings | None = None) -> list[str]:
    settings = settings or load_settings()
    specs = load_specs(settings)
    # Reverse order: what depends on a service (the serve process on the Prefect server) stops first.
    return [name for name in reversed(names or list(specs)) if stop(name, settings=settings)]


def client_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment that points clients (Prefect, boto3) at the running embedded services."""
    settings = settings or load_settings()
    env: dict[str, str] = {}
    if prefect := read_state("prefect", settings):
        env["PREFECT_API_URL"] = f"{prefect.url}/api"
    if s3 := read_state("s3", settings):
        access, secret = s3_credentials()
        env.update(
            MODELGATE_S3_ENDPOINT=s3.url,
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", access),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", secret),
        )
    return env
