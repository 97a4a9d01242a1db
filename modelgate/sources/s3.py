"""``s3://bucket/prefix`` sources: the prefix as a folder (``prefix/``), or a single object key.

The whole listing is checked (key names, file count, total size) before the first download, and
the caps are enforced again while streaming, since an object can change between list and get.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from modelgate.errors import FetchError
from modelgate.s3 import make_s3_client
from modelgate.sources.safety import Budget, check_relpath, open_new_file, read_chunks, write_chunks

# Keys per ListObjectsV2 page (S3's own maximum); tests lower it to exercise pagination.
LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class S3Object:
    key: str
    parts: tuple[str, ...]
    size: int


def parse_s3_uri(source: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix)."""
    parts = urlsplit(source)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise FetchError(f"source {source} is not an s3://bucket/prefix URI")
    if parts.query or parts.fragment:
        raise FetchError(f"source {source}: an s3:// URI takes no query or fragment")
    return parts.netloc, parts.path.lstrip("/")


def s3_endpoint(explicit: str | None) -> str | None:
    """The argument, else MODELGATE_S3_ENDPOINT; None lets boto3 read AWS_ENDPOINT_URL(_S3) itself."""
    return explicit or os.environ.get("MODELGATE_S3_ENDPOINT") or None


def fetch_s3(source: str, dest: Path, budget: Budget, *, endpoint: str | None, timeout_s: float) -> str:
    """Download every object under the prefix into ``dest``; return the endpoint the client used."""
    bucket, prefix = parse_s3_uri(source)
    client = make_s3_client(endpoint_url=s3_endpoint(endpoint), connect_timeout=timeout_s, read_timeout=timeout_s)
    try:
        objects = list_objects(client, bucket, prefix, source, budget)
        written = Budget(source, budget.max_bytes, budget.max_files)
        for obj in objects:
            download_object(client, bucket, obj, dest, written, source)
    except ClientError as exc:
        raise _client_error(exc, source) from exc
    except BotoCoreError as exc:
        raise FetchError(f"cannot fetch {source}: {exc}") from exc
    return str(client.meta.endpoint_url)


def list_objects(client: Any, bucket: str, prefix: str, source: str, budget: Budget) -> list[S3Object]:
    """The objects to fetch, checked against the caps: ``prefix/`` as a folder, else ``prefix`` as one key."""
    folder = prefix if prefix == "" or prefix.endswith("/") else prefix + "/"
    objects = _list_folder(client, bucket, folder, source, budget)
    if objects:
        return objects
    missing = FetchError(f"source {source} does not exist (no objects under {folder!r})")
    if folder == prefix:
        raise missing
    try:
        head = client.head_object(Bucket=bucket, Key=prefix)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            raise missing from exc
        raise
    name = prefix.rsplit("/", 1)[-1]
    obj = S3Object(prefix, check_relpath(name, what="S3 key", source=source), int(head["ContentLength"]))
    budget.add_file(obj.size)
    return [obj]


def _list_folder(client: Any, bucket: str, folder: str, source: str, budget: Budget) -> list[S3Object]:
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket, Prefix=folder, PaginationConfig={"PageSize": LIST_PAGE_SIZE})
    objects: list[S3Object] = []
    for page in pages:
        for item in page.get("Contents", []):
            key, size = item["Key"], int(item["Size"])
            if key.endswith("/") and size == 0:
                continue  # a folder marker written by consoles and some tools
            parts = check_relpath(key[len(folder) :], what="S3 key", source=source)
            budget.add_file(size, partial=True)
            objects.append(S3Object(key, parts, size))
    return objects


def download_object(client: Any, bucket: str, obj: S3Object, dest: Path, budget: Budget, source: str) -> None:
    """Stream one object into place, no more bytes than the listing announced."""
    response = client.get_object(Bucket=bucket, Key=obj.key)
    body = response["Body"]
    budget.add_file()
    try:
        with open_new_file(dest, obj.parts) as writer:
            received = write_chunks(
                read_chunks(body), writer, budget=budget, limit=obj.size, what=f"object {obj.key!r}"
            )
    finally:
        body.close()
    if received != obj.size:
        raise FetchError(f"object {obj.key!r} in {source} changed while fetching: {received} of {obj.size} bytes")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(exc: ClientError, source: str) -> FetchError:
    code = _code(exc)
    if code == "NoSuchBucket":
        return FetchError(f"source {source}: the bucket does not exist")
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return FetchError(f"source {source}: access denied ({code}); check the AWS credentials")
    message = exc.response.get("Error", {}).get("Message", "")
    return FetchError(f"cannot fetch {source}: {code} {message}".rstrip())
