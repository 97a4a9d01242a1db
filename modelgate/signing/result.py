"""The verdict of a signature check: evidence, never an exception."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from modelgate.manifest import Manifest, diff_files

SignatureStatus = Literal["verified", "unsigned", "invalid", "untrusted"]
SignatureFormat = Literal["oms", "ed25519", "none"]
MAX_LISTED = 5


class SignatureResult(BaseModel):
    """What a signature says about a model folder, and why."""

    status: SignatureStatus
    format: SignatureFormat
    signer: str = Field(default="", description="Publisher name from the trust store.")
    reason: str = ""
    missing: list[str] = Field(default_factory=list, description="Signed files absent from the model.")
    extra: list[str] = Field(default_factory=list, description="Model files the signature does not cover.")
    changed: list[str] = Field(default_factory=list, description="Files whose content differs from the signed digest.")
    key_id: str = ""
    path: str = Field(default="", description="The signature file that was read.")

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    return shown + (f", ... ({len(paths) - MAX_LISTED} more)" if len(paths) > MAX_LISTED else "")


def compare_files(
    signed: dict[str, object], manifest: Manifest, *, with_size: bool
) -> tuple[list[str], list[str], list[str], str]:
    """(missing, extra, changed, one-line reason or "") between a signed file list and the model."""
    actual: dict[str, object] = {e.path: (e.sha256, e.size) if with_size else e.sha256 for e in manifest.files}
    missing, extra, changed = diff_files(signed, actual)
    parts = []
    if changed:
        parts.append(f"{len(changed)} changed ({_names(changed)})")
    if missing:
        parts.append(f"{len(missing)} missing ({_names(missing)})")
    if extra:
        parts.append(f"{len(extra)} not signed ({_names(extra)})")
    reason = "model files differ from the signed manifest: " + "; ".join(parts) if parts else ""
    return missing, extra, changed, reason
