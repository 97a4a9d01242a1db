"""The organization's signing key behind a one-method interface, so a KMS or HSM can take its place.

``Signer.sign(payload)`` signs raw bytes (the DSSE pre-authentication encoding); ``key_id``
names the key in the envelope. ``FileSigner`` holds a PEM private key (ECDSA P-256/P-384 or
Ed25519) read from ``MODELGATE_ORG_SIGNING_KEY`` (the PEM itself), ``MODELGATE_ORG_SIGNING_KEY_FILE``
or ``$MODELGATE_HOME/keys/org-signing.key``. Consumers verify with the public key only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelgate.registry.config import PUBLIC_KEY_FILE, SIGNING_KEY_FILE, RegistryConfig
from modelgate.registry.errors import RegistryError
from modelgate.signing.truststore import PublicKey, key_id, spki_pem

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign bytes with the organization's key (a file, a KMS, an HSM)."""

    @property
    def key_id(self) -> str: ...

    def sign(self, payload: bytes) -> bytes: ...


class FileSigner:
    """Signs with a PEM private key held in memory."""

    def __init__(self, private_key_pem: bytes, password: bytes | None = None, *, source: str = "PEM") -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem, password)
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"cannot load the organization signing key from {source}: {exc}") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _CURVE_HASH:
            raise RegistryError(f"organization signing key curve {key.curve.name} is not supported (use P-256)")
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise RegistryError(f"organization signing key in {source} must be ECDSA P-256/P-384 or Ed25519")
        self._key: PrivateKey = key
        self._key_id = key_id(key.public_key())

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, payload: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(payload)
        return self._key.sign(payload, ec.ECDSA(_CURVE_HASH[self._key.curve.name]()))

    @classmethod
    def from_file(cls, path: Path) -> FileSigner:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise RegistryError(f"cannot read the organization signing key {path}: {exc.strerror or exc}") from exc
        return cls(data, source=str(path))

    @classmethod
    def from_env(cls, config: RegistryConfig | None = None) -> FileSigner:
        """The key from MODELGATE_ORG_SIGNING_KEY (PEM), MODELGATE_ORG_SIGNING_KEY_FILE, or the keys folder."""
        if pem := os.environ.get("MODELGATE_ORG_SIGNING_KEY"):
            return cls(pem.encode(), source="MODELGATE_ORG_SIGNING_KEY")
        if path := os.environ.get("MODELGATE_ORG_SIGNING_KEY_FILE"):
            return cls.from_file(Path(path))
        config = config or RegistryConfig.from_env()
        if not config.signing_key_path.is_file():
            raise RegistryError(
                f"no organization signing key: {config.signing_key_path} is missing "
                "(run `modelgate registry init`, or set MODELGATE_ORG_SIGNING_KEY_FILE)"
            )
        return cls.from_file(config.signing_key_path)


def load_public_key(pem: bytes, source: str = "PEM") -> PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"cannot load the organization public key from {source}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise RegistryError(f"organization public key in {source} must be ECDSA or Ed25519")
    return key


def org_public_key(config: RegistryConfig | None = None) -> PublicKey:
    """The key consumers trust: MODELGATE_ORG_PUBLIC_KEY (PEM), MODELGATE_ORG_PUBLIC_KEY_FILE, or the keys folder."""
    if pem := os.environ.get("MODELGATE_ORG_PUBLIC_KEY"):
        return load_public_key(pem.encode(), "MODELGATE_ORG_PUBLIC_KEY")
    path_env = os.environ.get("MODELGATE_ORG_PUBLIC_KEY_FILE")
    path = Path(path_env) if path_env else (config or RegistryConfig.from_env()).public_key_path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            f"no organization public key at {path} ({exc.strerror or exc}); set MODELGATE_ORG_PUBLIC_KEY_FILE"
        ) from exc
    return load_public_key(data, str(path))


def verifying_key(signer: Signer, config: RegistryConfig | None = None) -> PublicKey:
    """The key a writer checks the current index with before re-signing it.

    The signer's own public key when it exposes one (``FileSigner.public_key``, or a KMS
    signer's ``public_key()``), else the configured organization public key. A writer never
    re-signs an index that this key does not verify.
    """
    candidate = getattr(signer, "public_key", None)
    if callable(candidate):
        candidate = candidate()
    if isinstance(candidate, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return candidate
    return org_public_key(config)


def ensure_key_pair(keys_dir: Path) -> tuple[Path, Path, bool]:
    """Create an ECDSA P-256 key pair in ``keys_dir`` unless one exists: (private, public, created).

    The private key is created with mode 0600 in one step (never readable by others, even briefly).
    """
    private_path = keys_dir / SIGNING_KEY_FILE
    public_path = keys_dir / PUBLIC_KEY_FILE
    if private_path.exists():
        if not public_path.exists():
            public_path.write_bytes(spki_pem(FileSigner.from_file(private_path).public_key))
        return private_path, public_path, False
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(spki_pem(key.public_key()))
    return private_path, public_path, True
