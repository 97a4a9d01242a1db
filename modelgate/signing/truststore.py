"""Trust store: the publishers whose public keys modelgate accepts signatures from.

Format (docs/contracts.md): ``policies/trust/publishers.yaml``, key paths relative to
the YAML file, PEM public keys (ECDSA P-256/P-384 or Ed25519). A broken trust store
raises ``SignatureError`` naming the file: it is configuration, not a verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelgate.errors import SignatureError

API_VERSION = "modelgate.dev/v1"
KIND = "TrustStore"
SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}

KeyType = Literal["ecdsa", "ed25519"]
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def spki_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> str:
    """The id a signature names its key by.

    Ed25519: SHA-256 of the raw 32-byte key (``modelgate.sig`` ``keyid``). ECDSA: SHA-256
    of the PEM SubjectPublicKeyInfo, the ``publicKey.hint`` OMS writes into its bundles.
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(spki_pem(key)).hexdigest()


def key_type(key: object) -> KeyType | None:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in SUPPORTED_CURVES:
        return "ecdsa"
    return None


def describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {SUPPORTED_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


@dataclass(frozen=True)
class TrustedKey:
    """One public key of one publisher."""

    publisher: str
    type: KeyType
    key: PublicKey
    key_id: str
    path: Path


@dataclass
class Publisher:
    name: str
    description: str = ""
    keys: list[TrustedKey] = field(default_factory=list)


@dataclass
class TrustStore:
    """Trusted publishers and their keys, searchable by key or key id."""

    publishers: list[Publisher] = field(default_factory=list)
    source: Path | None = None

    @property
    def keys(self) -> list[TrustedKey]:
        return [k for p in self.publishers for k in p.keys]

    def find(self, public_key: object) -> TrustedKey | None:
        """The trusted entry for ``public_key`` (compared by SubjectPublicKeyInfo), if any."""
        if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            return None
        der = spki_der(public_key)
        return next((k for k in self.keys if spki_der(k.key) == der), None)

    def by_key_id(self, kid: str) -> list[TrustedKey]:
        kid = kid.strip().lower()
        return [k for k in self.keys if k.key_id == kid]


def load_trust_store(path: Path) -> TrustStore:
    """Read and check a trust store file; every error names the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read trust store: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SignatureError(f"{path}{where}: trust store is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(doc, dict):
        raise SignatureError(f"{path}: trust store must be a mapping with apiVersion, kind and publishers")
    if doc.get("apiVersion") != API_VERSION:
        raise SignatureError(f"{path}: apiVersion must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise SignatureError(f"{path}: kind must be {KIND!r}, got {doc.get('kind')!r}")
    raw_publishers = doc.get("publishers")
    if raw_publishers is None:
        raw_publishers = []
    if not isinstance(raw_publishers, list):
        raise SignatureError(f"{path}: publishers must be a list")
    store = TrustStore(source=path)
    seen: set[str] = set()
    for index, raw in enumerate(raw_publishers):
        publisher = _load_publisher(path, index, raw)
        if publisher.name in seen:
            raise SignatureError(f"{path}: publishers[{index}].name {publisher.name!r} is listed twice")
        seen.add(publisher.name)
        store.publishers.append(publisher)
    return store


def _load_publisher(path: Path, index: int, raw: Any) -> Publisher:
    where = f"publishers[{index}]"
    if not isinstance(raw, dict):
        raise SignatureError(f"{path}: {where} must be a mapping with name and keys")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SignatureError(f"{path}: {where}.name must be a non-empty string")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise SignatureError(f"{path}: {where}.description must be a string")
    keys = raw.get("keys")
    if not isinstance(keys, list) or not keys:
        raise SignatureError(f"{path}: {where}.keys must be a non-empty list")
    publisher = Publisher(name=name, description=description)
    for k_index, raw_key in enumerate(keys):
        publisher.keys.append(_load_key(path, f"{where}.keys[{k_index}]", name, raw_key))
    return publisher


def _load_key(path: Path, where: str, publisher: str, raw: Any) -> TrustedKey:
    if not isinstance(raw, dict):
        raise SignatureError(f"{path}: {where} must be a mapping with type and path")
    declared = raw.get("type")
    if declared not in ("ecdsa", "ed25519"):
        raise SignatureError(f"{path}: {where}.type must be 'ecdsa' or 'ed25519', got {declared!r}")
    rel = raw.get("path")
    if not isinstance(rel, str) or not rel.strip():
        raise SignatureError(f"{path}: {where}.path must be a non-empty string")
    key_path = (path.parent / rel).resolve()
    try:
        data = key_path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"{path}: {where}.path: cannot read {key_path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: {where}.path: {key_path} is not a PEM public key") from exc
    actual = key_type(key)
    if actual is None or not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise SignatureError(
            f"{path}: {where}.path: {key_path} holds an unsupported {describe_key(key)} key "
            "(use ECDSA P-256/P-384 or Ed25519)"
        )
    if actual != declared:
        raise SignatureError(f"{path}: {where}.type is {declared!r} but {key_path} holds an {describe_key(key)} key")
    return TrustedKey(publisher=publisher, type=actual, key=key, key_id=key_id(key), path=key_path)
