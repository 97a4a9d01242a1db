"""Parallel upload that hashes every byte it sends, so what lands in the bucket is what was approved.

Files are read once, sequentially, by the calling thread (which hashes them) and sent as single
PUTs or multipart parts by a thread pool; a file whose bytes no longer match the manifest is
refused before its upload completes. At most ``workers + 2`` parts are in memory at a time.
An ``abort`` event (set when the publish lost its claim) stops the upload before the next part.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelgate.registry.errors import PublishRefused, VersionExists
from modelgate.registry.store import translate


@dataclass(frozen=True)
class UploadItem:
    """One local file to one key; ``sha256``/``size`` given means the bytes must match them."""

    source: Path
    key: str
    label: str
    sha256: str | None = None
    size: int | None = None


@dataclass
class _Multipart:
    item: UploadItem
    upload_id: str
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)


def _read_exact(handle: Any, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = handle.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Uploader:
    """Uploads ``UploadItem``s to one bucket with a bounded number of parts in flight."""

    def __init__(
        self, client: Any, bucket: str, *, workers: int, part_size: int, abort: threading.Event | None = None
    ) -> None:
        self.client = client
        self.abort = abort
        self.bucket = bucket
        self.part_size = max(5 << 20, part_size)  # S3's minimum part size (all but the last part)
        self.workers = max(1, workers)
        self.window = threading.Semaphore(self.workers + 2)
        self.bytes_sent = 0
        self.digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def _sent(self, count: int) -> None:
        with self._lock:
            self.bytes_sent += count

    def upload(self, items: list[UploadItem]) -> int:
        """Upload every item; return the bytes sent. Raises on the first failure, aborting open uploads."""
        multiparts: list[_Multipart] = []
        singles: list[Future[Any]] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="modelgate-upload") as pool:
            try:
                for item in items:
                    self._submit(pool, item, singles, multiparts)
                self._finish(singles, multiparts)
            except BaseException:
                for future in singles + [p for m in multiparts for p in m.parts]:
                    future.cancel()
                self._abort(multiparts)
                raise
        return self.bytes_sent

    def _bounded(self, pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Future[Any]:
        self.window.acquire()
        if self.abort is not None and self.abort.is_set():
            self.window.release()
            raise VersionExists("another publish took over the claim: upload stopped")
        future = pool.submit(fn, *args)
        future.add_done_callback(lambda _: self.window.release())
        return future

    def _submit(
        self, pool: ThreadPoolExecutor, item: UploadItem, singles: list[Future[Any]], multiparts: list[_Multipart]
    ) -> None:
        hasher = hashlib.sha256()
        size = 0
        try:
            handle = item.source.open("rb")
        except OSError as exc:
            raise PublishRefused(f"cannot read {item.label}: {exc.strerror or exc}") from exc
        with handle:
            first = _read_exact(handle, self.part_size)
            hasher.update(first)
            size += len(first)
            if len(first) < self.part_size:
                self._check(item, hasher, size)
                singles.append(self._bounded(pool, self._put, item.key, first))
                return
            upload = _Multipart(item, self._create(item.key))
            multiparts.append(upload)
            number, chunk = 1, first
            while chunk:
                upload.parts.append(self._bounded(pool, self._part, item.key, upload.upload_id, number, chunk))
                chunk = _read_exact(handle, self.part_size)
                hasher.update(chunk)
                size += len(chunk)
                number += 1
        self._check(item, hasher, size)

    def _check(self, item: UploadItem, hasher: Any, size: int) -> None:
        self.digests[item.key] = "sha256:" + hasher.hexdigest()
        if item.size is not None and size != item.size:
            raise PublishRefused(f"file {item.label} changed since the manifest was built (size {size} != {item.size})")
        if item.sha256 is not None and hasher.hexdigest() != item.sha256:
            raise PublishRefused(f"file {item.label} changed since the manifest was built (digest mismatch)")

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "write", self.bucket, key) from exc
        self._sent(len(body))

    def _create(self, key: str) -> str:
        try:
            return str(self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "start a multipart upload of", self.bucket, key) from exc

    def _part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        try:
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"upload part {number} of", self.bucket, key) from exc
        self._sent(len(body))
        return {"ETag": response["ETag"], "PartNumber": number}

    def _finish(self, singles: list[Future[Any]], multiparts: list[_Multipart]) -> None:
        everything = singles + [p for m in multiparts for p in m.parts]
        done, _ = wait(everything, return_when="FIRST_EXCEPTION")
        for future in done:
            if (error := future.exception()) is not None:
                raise error
        for upload in multiparts:
            parts = [p.result() for p in upload.parts]
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=upload.item.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "complete the upload of", self.bucket, upload.item.key) from exc
            upload.upload_id = ""

    def _abort(self, multiparts: list[_Multipart]) -> None:
        for upload in multiparts:
            # An abandoned upload holds no visible object; a bucket lifecycle rule can expire it.
            if upload.upload_id:
                with contextlib.suppress(ClientError, BotoCoreError):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload.item.key, UploadId=upload.upload_id
                    )
