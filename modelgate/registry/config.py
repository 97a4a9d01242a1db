"""Registry configuration from the environment, and the S3 client it talks through.

Any S3 server works: the endpoint comes from ``MODELGATE_S3_ENDPOINT`` (else AWS), the
credentials from ``MODELGATE_REGISTRY_ACCESS_KEY``/``_SECRET_KEY`` or the standard AWS chain,
so a publisher and a consumer differ only by the identity they run with.
"""

from __future__ import annotations

import getpass
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from modelgate.registry.errors import RegistryError
from modelgate.s3 import default_region, s3_config
from modelgate.settings import load_settings, positive_int, positive_number

DEFAULT_BUCKET = "modelgate-registry"
DEFAULT_WORKERS = 8
DEFAULT_PART_MB = 8
DEFAULT_CLAIM_LEASE_S = 60.0
MIN_CLAIM_LEASE_S = 3.0  # S3 timestamps have one-second resolution: a shorter lease means nothing
MAX_CLAIM_LEASE_S = 86400.0
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
    claim_lease_s: float = DEFAULT_CLAIM_LEASE_S
    keys_dir: Path = Path(".modelgate/keys")
    state_dir: Path | None = None  # the consumer's rollback state; None: MODELGATE_REGISTRY_STATE_DIR or the default

    def __post_init__(self) -> None:
        check_lease(self.claim_lease_s, "claim_lease_s")

    @property
    def heartbeat_s(self) -> float:
        """How often a publisher renews its claim: six renewals per lease, so a few lost ones do not expire it."""
        return max(0.5, self.claim_lease_s / 6)

    @classmethod
    def from_env(cls) -> RegistryConfig:
        env = os.environ.get
        settings = load_settings()
        state_dir = env("MODELGATE_REGISTRY_STATE_DIR")
        return cls(
            bucket=env("MODELGATE_REGISTRY_BUCKET") or DEFAULT_BUCKET,
            endpoint=settings.s3_endpoint,
            access_key=env("MODELGATE_REGISTRY_ACCESS_KEY") or None,
            secret_key=env("MODELGATE_REGISTRY_SECRET_KEY") or None,
            region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or None,
            workers=positive_int("MODELGATE_REGISTRY_WORKERS", DEFAULT_WORKERS, error=RegistryError),
            part_size=positive_int("MODELGATE_REGISTRY_PART_MB", DEFAULT_PART_MB, error=RegistryError) << 20,
            claim_lease_s=_env_lease("MODELGATE_REGISTRY_CLAIM_LEASE_S"),
            keys_dir=settings.home / "keys",
            state_dir=Path(state_dir) if state_dir else None,
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


def check_lease(value: float, source: str) -> float:
    """A claim lease is a finite number of seconds in [3, 86400]; anything else is a configuration error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RegistryError(f"{source} must be a number of seconds, not {value!r}")
    if not MIN_CLAIM_LEASE_S <= value <= MAX_CLAIM_LEASE_S:
        raise RegistryError(
            f"{source} must be between {MIN_CLAIM_LEASE_S:g} and {MAX_CLAIM_LEASE_S:g} seconds, not {value:g}"
        )
    return float(value)


def _env_lease(name: str) -> float:
    raw = os.environ.get(name, "")
    value = positive_number(name, DEFAULT_CLAIM_LEASE_S, error=RegistryError)
    if not MIN_CLAIM_LEASE_S <= value <= MAX_CLAIM_LEASE_S:
        raise RegistryError(
            f"{name}={raw!r}: expected a number of seconds from {MIN_CLAIM_LEASE_S:g} to {MAX_CLAIM_LEASE_S:g}"
        )
    return value


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
