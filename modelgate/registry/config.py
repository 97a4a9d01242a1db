"""Registry configuration from the environment, and the S3 client it talks through.

Any S3 server works: the endpoint comes from ``MODELGATE_S3_ENDPOINT`` (else AWS), the
credentials from ``MODELGATE_REGISTRY_ACCESS_KEY``/``_SECRET_KEY`` or the standard AWS chain,
so a publisher and a consumer differ only by the identity they run with.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from modelgate.s3 import default_region, s3_config
from modelgate.settings import load_settings

DEFAULT_BUCKET = "modelgate-registry"
DEFAULT_WORKERS = 8
DEFAULT_PART_MB = 8
DEFAULT_CLAIM_TTL_S = 3600.0
SIGNING_KEY_FILE = "org-signing.key"
PUBLIC_KEY_FILE = "org-signing.pub"


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry is and how to move bytes to and from it."""

    bucket: str = DEFAULT_BUCKET
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None
    workers: int = DEFAULT_WORKERS
    part_size: int = DEFAULT_PART_MB << 20
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    keys_dir: Path = Path(".modelgate/keys")

    @classmethod
    def from_env(cls) -> RegistryConfig:
        env = os.environ.get
        settings = load_settings()
        return cls(
            bucket=env("MODELGATE_REGISTRY_BUCKET") or DEFAULT_BUCKET,
            endpoint=settings.s3_endpoint,
            access_key=env("MODELGATE_REGISTRY_ACCESS_KEY") or None,
            secret_key=env("MODELGATE_REGISTRY_SECRET_KEY") or None,
            region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or None,
            workers=max(1, int(env("MODELGATE_REGISTRY_WORKERS") or DEFAULT_WORKERS)),
            part_size=max(1, int(env("MODELGATE_REGISTRY_PART_MB") or DEFAULT_PART_MB)) << 20,
            claim_ttl_s=float(env("MODELGATE_REGISTRY_CLAIM_TTL_S") or DEFAULT_CLAIM_TTL_S),
            keys_dir=settings.home / "keys",
        )

    def with_(self, **changes: Any) -> RegistryConfig:
        return replace(self, **changes)

    def client(self) -> Any:
        """A boto3 S3 client for this registry, with a connection pool as wide as the transfer workers."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region or default_region(),
        )
        config = s3_config().merge(Config(max_pool_connections=max(10, self.workers * 2)))
        return session.client("s3", endpoint_url=self.endpoint or None, config=config)

    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / SIGNING_KEY_FILE

    @property
    def public_key_path(self) -> Path:
        return self.keys_dir / PUBLIC_KEY_FILE


def registry_configured() -> bool:
    """Publish only where someone configured a registry: an S3 endpoint or an explicit bucket.

    Without either, boto3 would talk to AWS with whatever credentials it finds; an intake
    on a laptop must never publish there by accident.
    """
    return bool(load_settings().s3_endpoint or os.environ.get("MODELGATE_REGISTRY_BUCKET"))


def actor() -> str:
    """Who does a registry change, for the index's who/when: ``MODELGATE_ACTOR``, else the login name."""
    if name := os.environ.get("MODELGATE_ACTOR"):
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
