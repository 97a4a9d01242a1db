"""The intake request: the flow's parameters, rendered as a form in the Prefect UI."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"


class ModelTask(StrEnum):
    IMAGE_CLASSIFICATION = "image-classification"
    TEXT_GENERATION = "text-generation"
    TEXT_CLASSIFICATION = "text-classification"
    OTHER = "other"


class IntakeRequest(BaseModel):
    """One model to take in: where it comes from, what to publish it as, how to judge it."""

    source: str = Field(
        description="Where the model is: a local path, file://, s3://bucket/prefix, https://..., or hf://org/repo@revision.",
        examples=["hf://org/model@0123abc", "s3://incoming/models/digits-cnn", "/data/models/digits-cnn"],
    )
    name: str = Field(description="Registry name to publish as (lowercase, digits, . _ -).", pattern=NAME_PATTERN)
    version: str = Field(description="Registry version to publish as (e.g. 1.0.0).", pattern=VERSION_PATTERN)
    expected_digest: str | None = Field(
        default=None,
        description="Pin: the model's expected root digest (`sha256:` + 64 hex digits); a mismatch rejects the model.",
        pattern=DIGEST_PATTERN,
    )
    signature: str | None = Field(
        default=None,
        description=(
            "Signature file (OMS bundle or modelgate Ed25519 signature). "
            "Default: model.sig / modelgate.sig inside the model."
        ),
    )
    model_task: ModelTask = Field(default=ModelTask.IMAGE_CLASSIFICATION, description="What the model does.")
    eval_data: str | None = Field(
        default=None,
        description="The organization's evaluation data: a folder of labelled images, `.npz`, parquet, or "
        "`sklearn:digits`. None skips the evaluations.",
    )
    reference: str | None = Field(
        default=None,
        description=(
            "Trusted checkpoint of the same architecture for the privacy-backdoor audit and weight forensics "
            "(same source forms as `source`); must be pinned with reference_digest."
        ),
    )
    reference_digest: str | None = Field(
        default=None,
        description="The reference's expected root digest (`sha256:` + 64 hex); refused on a mismatch.",
        pattern=DIGEST_PATTERN,
    )
    policy: str = Field(default="default", description="Policy name (`policies/NAME.yaml`) or a path to a policy file.")
    publish: bool = Field(
        default=True, description="Publish to the registry when approved (needs a configured registry)."
    )

    @field_validator("source")
    @classmethod
    def _source_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("source must not be empty")
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value) and value.split("://", 1)[0].lower() not in {
            "file",
            "s3",
            "https",
            "http",
            "hf",
        }:
            raise ValueError(f"unsupported source scheme in {value!r} (use a path, file://, s3://, https:// or hf://)")
        return value

    @model_validator(mode="after")
    def _reference_is_pinned(self) -> IntakeRequest:
        if self.reference is not None and not self.reference.strip():
            self.reference = None
        if self.reference and not self.reference_digest:
            raise ValueError("a reference checkpoint must be pinned: give reference_digest (sha256:...) with reference")
        return self


def signature_path(request: IntakeRequest, root: Path) -> Path | None:
    """A signature named in the request: an absolute/relative path, or a file inside the model at ``root``."""
    if not request.signature:
        return None
    candidate = Path(request.signature).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    return root / request.signature
