"""Where the evidence ledger lives: the git remote, the auditor's checkout, and the DVC remote on S3.

Every value comes from the environment with a one-machine default, so a shared install points the
same code at a shared git server and S3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelgate.errors import ModelgateError
from modelgate.settings import Settings, load_settings, switch

DEFAULT_BUCKET = "modelgate-dvc"
DVC_REMOTE = "ledger"  # name of the DVC remote inside the ledger


class LedgerError(ModelgateError):
    """The ledger cannot be reached or updated, or a run is not in it (one line, no traceback)."""


@dataclass(frozen=True)
class LedgerConfig:
    """The ledger's locations and the S3 credentials DVC pushes the evidence with."""

    remote: str
    checkout: Path
    workspaces: Path
    project: Path
    bucket: str
    endpoint: str | None
    access_key: str
    secret_key: str
    region: str
    enabled: bool = True

    @property
    def dvc_url(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def remote_path(self) -> Path | None:
        """The bare repository on this machine, when the remote is a local path (created on first use)."""
        if "://" in self.remote or (":" in self.remote and not self.remote.startswith("/")):
            return None
        return Path(self.remote).expanduser().resolve()

    def require_endpoint(self) -> str:
        if not self.endpoint:
            raise LedgerError(
                "no DVC remote: set MODELGATE_S3_ENDPOINT (or MODELGATE_DVC_ENDPOINT), "
                "or start the embedded S3 server with `modelgate services up`"
            )
        return self.endpoint


def _embedded_s3(settings: Settings) -> str | None:
    from modelgate import services

    state = services.read_state("s3", settings)
    return state.url if state else None


def load_ledger_config(settings: Settings | None = None) -> LedgerConfig:
    """The ledger configuration from the environment (see docs/audit.md for every variable)."""
    from modelgate.services import s3_credentials

    settings = settings or load_settings()
    env = os.environ.get
    access, secret = s3_credentials()
    if env("AWS_ACCESS_KEY_ID") and env("AWS_SECRET_ACCESS_KEY"):
        access, secret = env("AWS_ACCESS_KEY_ID", access), env("AWS_SECRET_ACCESS_KEY", secret)
    return LedgerConfig(
        remote=env("MODELGATE_LEDGER_REMOTE") or str(settings.home / "ledger.git"),
        checkout=Path(env("MODELGATE_LEDGER_DIR") or settings.home / "ledger").resolve(),
        workspaces=settings.workspace_dir / "ledger",
        project=settings.project,
        bucket=env("MODELGATE_DVC_BUCKET") or DEFAULT_BUCKET,
        endpoint=env("MODELGATE_DVC_ENDPOINT") or settings.s3_endpoint or _embedded_s3(settings),
        access_key=access,
        secret_key=secret,
        region=settings.s3_region,
        enabled=switch("MODELGATE_LEDGER", True),
    )
