"""One way to build an S3 client, so fetch, the registry and DVC talk to any S3 server alike.

SeaweedFS, MinIO and older S3 servers reject the checksum headers recent botocore sends by
default, and most of them only serve path-style URLs: the config below works with all of them and
with AWS S3.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"


def s3_config(*, max_attempts: int = 5, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> Config:
    """The botocore config modelgate uses for every S3 server (path-style, checksums only when required)."""
    return Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def default_region() -> str:
    """AWS_REGION / AWS_DEFAULT_REGION, else us-east-1 (what S3-compatible servers expect)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def make_s3_client(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
    *,
    session_token: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> Any:
    """An S3 client for ``endpoint_url`` (None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS).

    Credentials not given here come from the standard AWS chain (env, shared config, instance role).
    """
    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        region_name=region or default_region(),
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=s3_config(max_attempts=max_attempts, connect_timeout=connect_timeout, read_timeout=read_timeout),
    )
