"""Small S3 operations the registry needs, with S3 errors turned into one-line registry errors.

Conditional writes are the registry's only concurrency control: ``If-None-Match: *`` makes a
key write-once and ``If-Match: <etag>`` a compare-and-swap (SeaweedFS >= 4 honours both, as do
AWS S3 and MinIO; tests/test_registry.py proves it on the real server).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelgate.registry.errors import RegistryError, RegistryUnavailable

MAX_METADATA_BYTES = 64 << 20  # index, manifest, attestation, evidence: never a model file
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def precondition_failed(exc: BaseException) -> bool:
    """A conditional write lost: the key exists (If-None-Match) or changed (If-Match)."""
    return isinstance(exc, ClientError) and error_code(exc) in _PRECONDITION


def is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in _MISSING


def translate(exc: Exception, action: str, bucket: str, key: str = "") -> RegistryError:
    """One line naming the action and the object; transient failures are ``RegistryUnavailable``."""
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _DENIED:
            return RegistryError(f"access denied: cannot {action} {where} with this identity ({code})")
        if code == "NoSuchBucket":
            return RegistryError(f"registry bucket {bucket!r} does not exist (run `modelgate registry init`)")
        message = exc.response.get("Error", {}).get("Message") or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        kind = RegistryUnavailable if status >= 500 or status in (0, 429) else RegistryError
        return kind(f"cannot {action} {where}: {message}")
    if isinstance(exc, BotoCoreError):
        return RegistryUnavailable(f"cannot {action} {where}: {exc}")
    return RegistryError(f"cannot {action} {where}: {exc}")


def get_bytes(client: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(body, ETag) of a small object, or None when it does not exist."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength") or 0) > MAX_METADATA_BYTES:
            response["Body"].close()
            raise RegistryError(f"s3://{bucket}/{key} is larger than {MAX_METADATA_BYTES >> 20} MiB")
        return response["Body"].read(), str(response.get("ETag", ""))
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return None
        raise translate(exc, "read", bucket, key) from exc


@dataclass(frozen=True)
class Stored:
    """A small object with the server's clock: when it was last written, and "now" as the server said it."""

    body: bytes
    etag: str
    last_modified: datetime | None
    server_now: datetime | None

    def age_s(self, local_now: datetime) -> float | None:
        """Seconds since the last write, by the server's clock when it sent one (immune to client skew)."""
        if self.last_modified is None:
            return None
        return ((self.server_now or local_now) - self.last_modified).total_seconds()


def _server_date(response: dict[str, Any]) -> datetime | None:
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        return None


def get_stored(client: Any, bucket: str, key: str) -> Stored | None:
    """Like ``get_bytes``, with the object's Last-Modified and the server's Date header."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength") or 0) > MAX_METADATA_BYTES:
            response["Body"].close()
            raise RegistryError(f"s3://{bucket}/{key} is larger than {MAX_METADATA_BYTES >> 20} MiB")
        body = response["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return None
        raise translate(exc, "read", bucket, key) from exc
    modified = response.get("LastModified")
    return Stored(
        body=body,
        etag=str(response.get("ETag", "")),
        last_modified=modified if isinstance(modified, datetime) else None,
        server_now=_server_date(response),
    )


def exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return False
        raise translate(exc, "inspect", bucket, key) from exc


def put_bytes(
    client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    if_none_match: bool = False,
    if_match: str | None = None,
    content_type: str = "application/json",
) -> str:
    """Write an object and return its ETag. A lost condition raises the ``ClientError`` itself."""
    extra: dict[str, str] = {}
    if if_none_match:
        extra["IfNoneMatch"] = "*"
    if if_match is not None:
        extra["IfMatch"] = if_match
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **extra)
    except ClientError as exc:
        if (if_none_match or if_match is not None) and precondition_failed(exc):
            raise
        raise translate(exc, "write", bucket, key) from exc
    except BotoCoreError as exc:
        raise translate(exc, "write", bucket, key) from exc
    return str(response.get("ETag", ""))


def delete_keys(client: Any, bucket: str, keys: list[str]) -> None:
    """Delete keys, 1000 per request (best effort is the caller's decision)."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        try:
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "delete", bucket, batch[0]["Key"]) from exc


def list_keys(client: Any, bucket: str, prefix: str) -> Iterator[str]:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, "list", bucket, prefix) from exc


def list_folders(client: Any, bucket: str, prefix: str) -> list[str]:
    """The next path component of every key under ``prefix`` (S3 common prefixes), sorted."""
    names: list[str] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            for item in page.get("CommonPrefixes", []):
                names.append(str(item["Prefix"])[len(prefix) :].rstrip("/"))
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, "list", bucket, prefix) from exc
    return sorted(names)
