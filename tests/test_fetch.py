"""Fetch stage: every source scheme against real local servers, and every refusal."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from modelgate.errors import FetchError
from modelgate.evidence import Status
from modelgate.s3 import make_s3_client
from modelgate.settings import load_settings
from modelgate.sources import FetchResult, fetch
from tests.helpers.marks import starts_server
from tests.helpers.servers import (
    Body,
    ChunkedStream,
    FakeHubServer,
    FileServer,
    HugeContentLength,
    Redirect,
    S3Server,
    SlowBody,
    fake_sha,
    seaweedfs,
    serve_directory,
)

MB = 1000 * 1000
FILES = {
    "config.json": b'{"model_type": "cnn"}',
    "README.md": b"---\nlicense: mit\n---\n# tiny\n",
    "weights/model.safetensors": bytes(range(256)) * 40,
}


def run_fetch(source: str, dest: Path, **limits: float) -> FetchResult:
    args = {"max_bytes": 10 * MB, "max_files": 100, "timeout_s": 5.0, **limits}
    return fetch(
        source,
        dest,
        max_bytes=int(args["max_bytes"]),
        max_files=int(args["max_files"]),
        timeout_s=float(args["timeout_s"]),
    )


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "model", FILES)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "workspace" / "model"


def assert_empty(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []


# --------------------------------------------------------------------------- local and file://


def test_local_folder_is_copied(model_dir: Path, dest: Path) -> None:
    result = run_fetch(str(model_dir), dest)
    assert read_tree(dest) == FILES
    assert result.scheme == "local" and result.source_host == ""
    assert result.root == dest.resolve()
    assert result.files == sorted(FILES)
    assert result.file_count == 3 and result.total_bytes == sum(map(len, FILES.values()))
    assert result.resolved == model_dir.resolve().as_uri()
    assert result.revision is None and not result.revision_pinned
    source_inode = (model_dir / "config.json").stat().st_ino
    assert (dest / "config.json").stat().st_ino != source_inode, "must copy, not hardlink"


def test_local_single_file_and_file_uri(model_dir: Path, tmp_path: Path) -> None:
    single = model_dir / "weights" / "model.safetensors"
    result = run_fetch(str(single), tmp_path / "a")
    assert result.files == ["model.safetensors"] and result.file_count == 1
    result = run_fetch(single.as_uri(), tmp_path / "b")
    assert result.scheme == "file" and result.files == ["model.safetensors"]
    result = run_fetch(model_dir.as_uri(), tmp_path / "c")
    assert result.scheme == "file" and read_tree(tmp_path / "c") == FILES


def test_missing_source(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(FetchError, match=r"^source .*/nope does not exist$"):
        run_fetch(str(tmp_path / "nope"), dest)
    with pytest.raises(FetchError, match="must be local"):
        run_fetch("file://otherhost/x", dest)


def test_symlink_escaping_the_source_is_refused(model_dir: Path, tmp_path: Path, dest: Path) -> None:
    secret = write_tree(tmp_path / "outside", {"secret.txt": b"s3cr3t"}) / "secret.txt"
    (model_dir / "weights" / "leak.bin").symlink_to(secret)
    with pytest.raises(FetchError, match=r"refusing symbolic link 'weights/leak.bin' -> '.*secret.txt'"):
        run_fetch(str(model_dir), dest)
    assert_empty(dest)


def test_symlink_inside_the_source_is_refused_too(model_dir: Path, dest: Path) -> None:
    (model_dir / "alias.json").symlink_to("config.json")
    with pytest.raises(FetchError, match="links are not fetched"):
        run_fetch(str(model_dir), dest)


def test_fifo_is_refused(model_dir: Path, dest: Path) -> None:
    os.mkfifo(model_dir / "pipe")
    with pytest.raises(FetchError, match="'pipe' .*a fifo"):
        run_fetch(str(model_dir), dest)


def test_size_cap_is_enforced_before_copying(model_dir: Path, dest: Path) -> None:
    with pytest.raises(FetchError, match=r"exceeds the size cap: .* > 1.0 kB \(MODELGATE_MAX_FETCH_BYTES\)"):
        run_fetch(str(model_dir), dest, max_bytes=1000)
    assert_empty(dest)


def test_file_count_cap(model_dir: Path, dest: Path) -> None:
    with pytest.raises(FetchError, match=r"file count cap: .*3 > 2 files \(MODELGATE_MAX_FILES\)"):
        run_fetch(str(model_dir), dest, max_files=2)
    assert_empty(dest)


def test_non_empty_destination_is_refused(model_dir: Path, dest: Path) -> None:
    write_tree(dest, {"left-over.bin": b"x"})
    with pytest.raises(FetchError, match="is not empty"):
        run_fetch(str(model_dir), dest)
    assert (dest / "left-over.bin").read_bytes() == b"x", "a refused destination is left untouched"


def test_destination_inside_the_source_is_refused(model_dir: Path) -> None:
    with pytest.raises(FetchError, match="inside the source"):
        run_fetch(str(model_dir), model_dir / "ws")


def test_unknown_scheme(dest: Path) -> None:
    with pytest.raises(FetchError, match="unsupported scheme 'ftp'"):
        run_fetch("ftp://example.org/model", dest)


# --------------------------------------------------------------------------- https


@pytest.fixture
def web(tmp_path: Path) -> Iterator[FileServer]:
    root = write_tree(tmp_path / "web", {"model.safetensors": FILES["weights/model.safetensors"]})
    with FileServer(root) as server:
        yield server


def test_https_single_file(web: FileServer, dest: Path) -> None:
    result = run_fetch(f"{web.url}/model.safetensors", dest)
    assert read_tree(dest) == {"model.safetensors": FILES["weights/model.safetensors"]}
    assert result.scheme == "http" and result.source_host == "127.0.0.1"
    assert result.resolved == f"{web.url}/model.safetensors"


def test_serve_directory_yields_a_base_url(tmp_path: Path, dest: Path) -> None:
    root = write_tree(tmp_path / "site", {"a/b.bin": b"abc"})
    with serve_directory(root, {"/x.bin": Body(b"xyz")}) as url:
        run_fetch(f"{url}/a/b.bin", dest)
        run_fetch(f"{url}/x.bin", tmp_path / "second")
    assert (dest / "b.bin").read_bytes() == b"abc"
    assert (tmp_path / "second" / "x.bin").read_bytes() == b"xyz"


def test_https_tar_gz_is_extracted(web: FileServer, dest: Path) -> None:
    members = [("./" + name, data) for name, data in FILES.items()]
    url = web.add_route("/tiny.tar.gz", Body(tar_bytes(members), "application/gzip"))
    result = run_fetch(url, dest)
    assert read_tree(dest) == FILES, "archive unpacked, archive itself and staging folder gone"
    assert result.file_count == 3


def test_https_zip_is_extracted_but_a_zip_based_checkpoint_is_not(web: FileServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    archive = buffer.getvalue()
    run_fetch(web.add_route("/tiny.zip", Body(archive)), tmp_path / "a")
    assert read_tree(tmp_path / "a") == FILES
    run_fetch(web.add_route("/model.pt", Body(archive)), tmp_path / "b")
    assert read_tree(tmp_path / "b") == {"model.pt": archive}, "a PyTorch zip checkpoint stays one file"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../evil", b"x"), r"refusing archive member '\.\./evil' in .*: path escapes the destination"),
        (("/etc/evil", b"x"), "refusing archive member '/etc/evil' in .*: absolute path"),
        (link_member("weights/link", "/etc/passwd"), "refusing archive member 'weights/link' .*links"),
        (link_member("hard", "config.json", tarfile.LNKTYPE), "refusing archive member 'hard' .*links"),
        (link_member("dev", "", tarfile.CHRTYPE), "refusing archive member 'dev' .*devices"),
    ],
)
def test_hostile_tar_members_are_refused(
    web: FileServer, tmp_path: Path, dest: Path, member: tarfile.TarInfo | tuple[str, bytes], message: str
) -> None:
    archive = tar_bytes([("config.json", b"{}"), member])
    with pytest.raises(FetchError, match=message):
        run_fetch(web.add_route("/evil.tar.gz", Body(archive)), dest)
    assert_empty(dest)
    assert not (dest.parent / "evil").exists()


def test_zip_symlink_member_is_refused(web: FileServer, dest: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(FetchError, match="refusing archive member 'link' .*links"):
        run_fetch(web.add_route("/evil.zip", Body(buffer.getvalue())), dest)


def test_zip_bomb_ratio_is_refused(web: FileServer, dest: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (5 * MB))
    assert len(buffer.getvalue()) < 20_000
    with pytest.raises(FetchError, match=r"expands \d+x .*zip bomb"):
        run_fetch(web.add_route("/bomb.zip", Body(buffer.getvalue())), dest)
    assert_empty(dest)


def test_tar_gz_bomb_ratio_is_refused(web: FileServer, dest: Path) -> None:
    archive = tar_bytes([("zeros.bin", b"\0" * (5 * MB))])
    with pytest.raises(FetchError, match="zip bomb"):
        run_fetch(web.add_route("/bomb.tgz", Body(archive)), dest)


def test_archive_total_size_is_capped(web: FileServer, dest: Path) -> None:
    archive = tar_bytes([("a.bin", os.urandom(3000))], mode="w")
    with pytest.raises(FetchError, match="exceeds the size cap"):
        run_fetch(web.add_route("/big.tar", Body(archive)), dest, max_bytes=5000)


def test_content_length_over_the_cap_is_refused(web: FileServer, dest: Path) -> None:
    url = web.add_route("/huge.bin", HugeContentLength(declared=10**12))
    with pytest.raises(FetchError, match=r"exceeds the size cap: 1.0 TB > 1.0 MB .*Content-Length"):
        run_fetch(url, dest, max_bytes=MB)
    assert_empty(dest)


def test_stream_without_length_over_the_cap_is_aborted(web: FileServer, dest: Path) -> None:
    url = web.add_route("/stream.bin", ChunkedStream(total=5 * MB))
    with pytest.raises(FetchError, match="exceeds the size cap while downloading"):
        run_fetch(url, dest, max_bytes=MB)
    assert_empty(dest)


def test_stream_without_length_under_the_cap_is_kept(web: FileServer, dest: Path) -> None:
    result = run_fetch(web.add_route("/stream.bin", ChunkedStream(total=300_000, fill=b"ab")), dest)
    assert result.total_bytes == 300_000
    assert (dest / "stream.bin").read_bytes() == (b"ab" * 150_000)


def test_read_timeout(web: FileServer, dest: Path) -> None:
    url = web.add_route("/slow.bin", SlowBody(delay_s=5))
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out fetching .*/slow.bin .*MODELGATE_HTTP_TIMEOUT_S"):
        run_fetch(url, dest, timeout_s=0.5)
    assert time.monotonic() - start < 4
    assert_empty(dest)


def test_plain_http_elsewhere_is_refused_before_connecting(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(FetchError, match=r"refusing plain http source http://203\.0\.113\.1/m\.bin: use https"):
        run_fetch("http://203.0.113.1/m.bin", dest, timeout_s=30)
    assert_empty(dest)


def test_redirect_to_plain_http_elsewhere_is_refused(web: FileServer, dest: Path) -> None:
    url = web.add_route("/moved.bin", Redirect("http://203.0.113.1/m.bin"))
    with pytest.raises(FetchError, match="refusing plain http redirect target"):
        run_fetch(url, dest, timeout_s=30)


def test_http_error_status(web: FileServer, dest: Path) -> None:
    with pytest.raises(FetchError, match="answered HTTP 404"):
        run_fetch(f"{web.url}/missing.bin", dest)


def test_credentials_in_url_are_refused(dest: Path) -> None:
    with pytest.raises(FetchError, match=r"https://\*\*\*@example.org/m.bin carries credentials"):
        run_fetch("https://user:pw@example.org/m.bin", dest)


# --------------------------------------------------------------------------- hf://

SHA_OLD, SHA_NEW = fake_sha("tiny-1"), fake_sha("tiny-2")
HUB_REPOS = {
    "org/tiny": {
        SHA_OLD: {"config.json": b'{"v": 1}', "model.safetensors": b"\x01" * 100},
        SHA_NEW: {"config.json": b'{"v": 2}', "model.safetensors": b"\x02" * 200, "sub/extra.txt": b"extra"},
    },
    "org/evil": {fake_sha("evil"): {"../escape.txt": b"x"}},
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubServer]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHubServer(HUB_REPOS, refs={"org/tiny": {"v1": SHA_OLD}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_hf_pinned_commit(hub: FakeHubServer, dest: Path) -> None:
    result = run_fetch(f"hf://org/tiny@{SHA_OLD}", dest)
    assert read_tree(dest) == HUB_REPOS["org/tiny"][SHA_OLD]
    assert not (dest / ".cache").exists(), "no huggingface_hub metadata left behind"
    assert result.scheme == "hf" and result.source_host == "127.0.0.1"
    assert result.revision == SHA_OLD and result.revision_requested == SHA_OLD and result.revision_pinned
    assert result.resolved == f"hf://org/tiny@{SHA_OLD}"
    assert not any(p.is_symlink() for p in dest.rglob("*"))


@pytest.mark.parametrize(("suffix", "requested"), [("", None), ("@main", "main")])
def test_hf_branch_is_resolved_and_recorded(hub: FakeHubServer, dest: Path, suffix: str, requested: str) -> None:
    result = run_fetch(f"hf://org/tiny{suffix}", dest)
    assert result.revision == SHA_NEW and result.revision_requested == requested
    assert not result.revision_pinned
    assert result.resolved == f"hf://org/tiny@{SHA_NEW}"
    assert read_tree(dest) == HUB_REPOS["org/tiny"][SHA_NEW]
    assert all(f"/resolve/{SHA_NEW}/" in path for path in hub.downloads()), "files fetched at the resolved sha"


def test_hf_unknown_repo_and_revision(hub: FakeHubServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^source hf://org/nope: repo 'org/nope' not found at http://127"):
        run_fetch("hf://org/nope", tmp_path / "a")
    with pytest.raises(FetchError, match=r"revision 'v9' not found"):
        run_fetch("hf://org/tiny@v9", tmp_path / "b")


def test_hf_size_cap_checked_before_download(hub: FakeHubServer, dest: Path) -> None:
    with pytest.raises(FetchError, match=r"exceeds the size cap: 213 B > 150 B"):
        run_fetch("hf://org/tiny", dest, max_bytes=150)
    assert hub.downloads() == [], "nothing downloaded"
    with pytest.raises(FetchError, match="file count cap"):
        run_fetch("hf://org/tiny", dest, max_files=2)
    assert hub.downloads() == []
    assert_empty(dest)


def test_hf_hostile_file_name_refused(hub: FakeHubServer, dest: Path) -> None:
    with pytest.raises(FetchError, match=r"refusing hub file '\.\./escape\.txt' .*escapes"):
        run_fetch("hf://org/evil", dest)
    assert hub.downloads() == []


def test_hf_offline_mode_is_respected(hub: FakeHubServer, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE"):
        run_fetch(f"hf://org/tiny@{SHA_OLD}", dest)
    assert hub.requests == []


def test_hf_snapshot_download_works_against_the_fake_hub(hub: FakeHubServer, tmp_path: Path) -> None:
    """The fake hub also serves the tree listing snapshot_download uses (for other tests to reuse)."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        "org/tiny", revision="v1", local_dir=tmp_path / "snap", cache_dir=tmp_path / "cache", endpoint=hub.url
    )
    assert (Path(folder) / "model.safetensors").read_bytes() == b"\x01" * 100


# --------------------------------------------------------------------------- s3:// on a real SeaweedFS


@pytest.fixture(scope="session")
@starts_server
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MODELGATE_S3_ENDPOINT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return s3_server


@pytest.mark.services
def test_s3_prefix_on_seaweedfs(s3_env: S3Server, tmp_path: Path) -> None:
    client = make_s3_client(*s3_env)
    client.create_bucket(Bucket="incoming")
    for name, data in FILES.items():
        client.put_object(Bucket="incoming", Key=f"models/tiny/{name}", Body=data)
    client.put_object(Bucket="incoming", Key="models/tiny-other/x.bin", Body=b"not mine")

    result = fetch(
        "s3://incoming/models/tiny",
        tmp_path / "a",
        max_bytes=MB,
        max_files=10,
        timeout_s=10,
        s3_endpoint=s3_env.endpoint_url,
    )
    assert read_tree(tmp_path / "a") == FILES, "prefix means the folder prefix/, not tiny-other"
    assert result.scheme == "s3" and result.source_host == "127.0.0.1"
    assert result.resolved == "s3://incoming/models/tiny"

    single = fetch(
        "s3://incoming/models/tiny/config.json",
        tmp_path / "b",
        max_bytes=MB,
        max_files=10,
        timeout_s=10,
        s3_endpoint=s3_env.endpoint_url,
    )
    assert single.files == ["config.json"]

    with pytest.raises(FetchError, match="exceeds the size cap"):
        fetch(
            "s3://incoming/models/tiny",
            tmp_path / "c",
            max_bytes=100,
            max_files=10,
            timeout_s=10,
            s3_endpoint=s3_env.endpoint_url,
        )
    with pytest.raises(FetchError, match="does not exist"):
        fetch(
            "s3://incoming/models/none",
            tmp_path / "d",
            max_bytes=MB,
            max_files=10,
            timeout_s=10,
            s3_endpoint=s3_env.endpoint_url,
        )
    with pytest.raises(FetchError, match="bucket does not exist"):
        fetch(
            "s3://no-such-bucket/x",
            tmp_path / "e",
            max_bytes=MB,
            max_files=10,
            timeout_s=10,
            s3_endpoint=s3_env.endpoint_url,
        )


@pytest.mark.services
def test_s3_dotdot_key_cannot_reach_the_fetcher_through_seaweedfs(s3_env: S3Server) -> None:
    """SeaweedFS refuses to store a '..' key (the fetcher's own refusal is tested with moto below)."""
    client = make_s3_client(*s3_env)
    client.create_bucket(Bucket="hostile")
    with pytest.raises(Exception, match="InvalidRequest"):
        client.put_object(Bucket="hostile", Key="m/../escape.bin", Body=b"x")


# --------------------------------------------------------------------------- s3:// with moto


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MODELGATE_S3_ENDPOINT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = make_s3_client()
        client.create_bucket(Bucket="models")
        yield client


def count_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count S3 operations of the clients fetch creates."""
    import modelgate.sources.s3 as s3_source

    calls: dict[str, int] = {}

    def counting_client(*args, **kwargs):
        client = make_s3_client(*args, **kwargs)

        def count(model, **_):
            calls[model.name] = calls.get(model.name, 0) + 1

        client.meta.events.register("before-call.s3", count)
        return client

    monkeypatch.setattr(s3_source, "make_s3_client", counting_client)
    return calls


def test_s3_listing_is_paginated(moto_s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelgate.sources.s3 as s3_source

    for index in range(5):
        moto_s3.put_object(Bucket="models", Key=f"tiny/part-{index}.bin", Body=bytes([index]) * 10)
    monkeypatch.setattr(s3_source, "LIST_PAGE_SIZE", 2)
    calls = count_calls(monkeypatch)
    result = fetch("s3://models/tiny/", tmp_path / "a", max_bytes=MB, max_files=10, timeout_s=10)
    assert result.file_count == 5 and result.total_bytes == 50
    assert calls["ListObjectsV2"] == 3 and calls["GetObject"] == 5


def test_s3_caps_checked_from_the_listing_before_download(
    moto_s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        moto_s3.put_object(Bucket="models", Key=f"tiny/part-{index}.bin", Body=b"x" * 100)
    calls = count_calls(monkeypatch)
    with pytest.raises(FetchError, match=r"exceeds the size cap: at least 300 B > 250 B"):
        fetch("s3://models/tiny", tmp_path / "a", max_bytes=250, max_files=10, timeout_s=10)
    with pytest.raises(FetchError, match="file count cap"):
        fetch("s3://models/tiny", tmp_path / "b", max_bytes=MB, max_files=2, timeout_s=10)
    assert "GetObject" not in calls


@pytest.mark.parametrize(
    ("key", "why"),
    [("tiny/../escape.bin", "path escapes the destination"), ("tiny/a//b.bin", "empty or '.' path segment")],
)
def test_s3_hostile_keys_are_refused(moto_s3, tmp_path: Path, key: str, why: str) -> None:
    moto_s3.put_object(Bucket="models", Key="tiny/ok.bin", Body=b"ok")
    moto_s3.put_object(Bucket="models", Key=key, Body=b"x")
    with pytest.raises(FetchError, match=f"refusing S3 key .* in s3://models/tiny: {why}"):
        fetch("s3://models/tiny", tmp_path / "a", max_bytes=MB, max_files=10, timeout_s=10)
    assert_empty(tmp_path / "a")


# --------------------------------------------------------------------------- the stage


def test_fetch_stage_reports_a_missing_source_as_error_evidence(tmp_path: Path) -> None:
    from tasks.fetch import fetch_stage, fetch_task

    settings = replace(load_settings(), max_fetch_bytes=MB, max_files=10, http_timeout_s=5, s3_endpoint=None)
    evidence, result = fetch_stage(str(tmp_path / "missing"), tmp_path / "ws", settings)
    assert result is None
    assert evidence.stage == "fetch" and evidence.status is Status.ERROR
    assert evidence.reason == f"source {tmp_path / 'missing'} does not exist"
    assert evidence.metrics == {"fetch.scheme": "local"}
    assert "boto3" in evidence.tools
    evidence.to_json()
    assert fetch_task.retries == 2


def test_fetch_stage_pass_evidence(model_dir: Path, tmp_path: Path) -> None:
    from tasks.fetch import fetch_stage

    settings = replace(load_settings(), max_fetch_bytes=MB, max_files=10, http_timeout_s=5, s3_endpoint=None)
    evidence, result = fetch_stage(str(model_dir), tmp_path / "ws", settings)
    assert result is not None and evidence.status is Status.PASS
    assert evidence.metrics == {
        "fetch.scheme": "local",
        "fetch.source_host": "",
        "fetch.file_count": 3,
        "fetch.total_bytes": result.total_bytes,
    }
    assert evidence.details["files"] == sorted(FILES)
    assert evidence.details["revision"] is None and evidence.duration_s is not None
