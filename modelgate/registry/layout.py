"""Where things live in the registry bucket, and how a consumer names a model.

``models/<name>/<version>/{files/...,manifest.json,decision.json,attestation.json}``
plus ``evidence/`` (the intake run's evidence), ``claim.json`` (who is publishing) and
``revocation.json`` (the revocation mark); ``models/<name>/index.json`` lists versions and aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelgate.registry.errors import RegistryError
from modelgate.request import NAME_PATTERN, VERSION_PATTERN

ROOT = "models"
ALIAS_PATTERN = r"^[a-z][a-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
LATEST = "latest"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RegistryError(f"invalid model name {name!r} (lowercase letters, digits, . _ -)")
    return name


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise RegistryError(f"invalid version {version!r} (letters, digits, . _ + -)")
    return version


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias):
        raise RegistryError(f"invalid alias {alias!r} (lowercase letters, digits, . _ -, starting with a letter)")
    return alias


def check_file_path(path: str) -> str:
    """A manifest path must stay inside the model folder once written to disk or to a key."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise RegistryError(f"unsafe file path in manifest: {path!r}")
    return path


@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME@VERSION`` or ``NAME:ALIAS`` as a consumer writes it."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version:
            return f"{self.name}@{self.version}"
        return f"{self.name}:{self.alias}" if self.alias else self.name


def parse_ref(text: str) -> ModelRef:
    """Parse ``NAME[@VERSION|:ALIAS]``; a bare name means the ``latest`` alias or newest version."""
    if "@" in text:
        name, version = text.split("@", 1)
        return ModelRef(check_name(name), version=check_version(version))
    if ":" in text:
        name, alias = text.split(":", 1)
        return ModelRef(check_name(name), alias=check_alias(alias))
    return ModelRef(check_name(text))


def model_prefix(name: str) -> str:
    return f"{ROOT}/{name}/"


def index_key(name: str) -> str:
    return f"{ROOT}/{name}/index.json"


def version_prefix(name: str, version: str) -> str:
    return f"{ROOT}/{name}/{version}/"


def file_key(name: str, version: str, path: str) -> str:
    return version_prefix(name, version) + "files/" + check_file_path(path)


def evidence_key(name: str, version: str, path: str) -> str:
    return version_prefix(name, version) + "evidence/" + check_file_path(path)


def manifest_key(name: str, version: str) -> str:
    return version_prefix(name, version) + "manifest.json"


def decision_key(name: str, version: str) -> str:
    return version_prefix(name, version) + "decision.json"


def attestation_key(name: str, version: str) -> str:
    return version_prefix(name, version) + "attestation.json"


def claim_key(name: str, version: str) -> str:
    return version_prefix(name, version) + "claim.json"


def revocation_key(name: str, version: str) -> str:
    return version_prefix(name, version) + "revocation.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
