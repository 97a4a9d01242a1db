"""Detached Ed25519 signatures over the manifest (``modelgate.sig``, docs/contracts.md).

The signature covers the canonical JSON of ``{"root_digest", "files"}``, so it binds
every file's path, size and digest; the root digest is rechecked against the files.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from modelgate.errors import SignatureError
from modelgate.evidence import canonical_json
from modelgate.manifest import FileEntry, Manifest, compute_root_digest
from modelgate.signing.result import SignatureResult, compare_files
from modelgate.signing.truststore import TrustStore, describe_key, key_id

FORMAT = "modelgate-ed25519/v1"
HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
ROOT_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class MalformedSignature(ValueError):
    """The file is not a readable ``modelgate.sig``; the message is the one-line reason."""


def signed_manifest(manifest: Manifest) -> dict[str, Any]:
    """The part of the manifest the signature covers."""
    return {"root_digest": manifest.root_digest, "files": [e.model_dump() for e in manifest.files]}


def load_private_key(private_key_pem: bytes, password: bytes | None = None) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(private_key_pem, password)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"cannot load the signing key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"modelgate.sig needs an Ed25519 private key, got {describe_key(key.public_key())}")
    return key


def sign_ed25519(manifest: Manifest, private_key_pem: bytes, password: bytes | None = None) -> dict[str, Any]:
    """Sign ``manifest`` with an Ed25519 PEM private key; returns the ``modelgate.sig`` document."""
    key = load_private_key(private_key_pem, password)
    body = signed_manifest(manifest)
    return {
        "format": FORMAT,
        "keyid": key_id(key.public_key()),
        "manifest": body,
        "signature": base64.b64encode(key.sign(canonical_json(body))).decode("ascii"),
    }


def verify_ed25519(doc: Any, manifest: Manifest, store: TrustStore, path: str = "") -> SignatureResult:
    """Verdict for one ``modelgate.sig`` document (already parsed from JSON) against the model."""

    def result(status: str, reason: str = "", **extra: Any) -> SignatureResult:
        return SignatureResult.model_validate(
            {"status": status, "format": "ed25519", "reason": reason, "path": path, **extra}
        )

    try:
        kid, body, signature = _parse(doc)
    except MalformedSignature as exc:
        return result("invalid", f"malformed modelgate.sig: {exc}")
    trusted = [k for k in store.by_key_id(kid) if k.type == "ed25519"]
    if not trusted:
        return result("untrusted", f"signed by Ed25519 key {kid[:16]}, which is not in the trust store", key_id=kid)
    message = canonical_json(body)
    signer = next((k for k in trusted if _verifies(k.key, signature, message)), None)
    if signer is None:
        first = trusted[0]
        return result(
            "invalid",
            f"signature does not verify with trusted key {kid[:16]} of {first.publisher}",
            key_id=kid,
        )
    by = f"signed by {signer.publisher}, but "
    try:
        files, root = _signed_files(body)
    except MalformedSignature as exc:
        return result("invalid", f"{by}malformed signed manifest: {exc}", key_id=kid)
    signed = {e.path: (e.sha256, e.size) for e in files}
    missing, extra, changed, reason = compare_files(dict(signed), manifest, with_size=True)
    if not reason and root != manifest.root_digest:
        reason = f"signed root digest {root} differs from the model's {manifest.root_digest}"
    fields: dict[str, Any] = {"key_id": kid, "missing": missing, "extra": extra, "changed": changed}
    if reason:
        return result("invalid", by + reason, **fields)
    return result("verified", signer=signer.publisher, **fields)


def _verifies(key: object, signature: bytes, message: bytes) -> bool:
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _parse(doc: Any) -> tuple[str, dict[str, Any], bytes]:
    if not isinstance(doc, dict):
        raise MalformedSignature("must be a JSON object")
    if doc.get("format") != FORMAT:
        raise MalformedSignature(f"format must be {FORMAT!r}, got {doc.get('format')!r}")
    kid = doc.get("keyid")
    if not isinstance(kid, str) or not HEX_DIGEST.match(kid):
        raise MalformedSignature("keyid must be a hex SHA-256 of the raw public key")
    body = doc.get("manifest")
    if not isinstance(body, dict):
        raise MalformedSignature("manifest must be an object")
    raw = doc.get("signature")
    if not isinstance(raw, str):
        raise MalformedSignature("signature must be a base64 string")
    try:
        signature = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignature("signature is not valid base64") from exc
    return kid, body, signature


def _signed_files(body: dict[str, Any]) -> tuple[list[FileEntry], str]:
    """The signed files, checked, and the signed root digest (which must match them)."""
    root = body.get("root_digest")
    if not isinstance(root, str) or not ROOT_DIGEST.match(root):
        raise MalformedSignature("root_digest must be sha256:<hex>")
    raw_files = body.get("files")
    if not isinstance(raw_files, list):
        raise MalformedSignature("files must be a list")
    files: list[FileEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_files):
        if not isinstance(item, dict):
            raise MalformedSignature(f"files[{index}] must be an object")
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if not isinstance(path, str) or not path or path in seen:
            raise MalformedSignature(f"files[{index}].path must be a unique non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedSignature(f"files[{index}].size must be a non-negative integer")
        if not isinstance(digest, str) or not HEX_DIGEST.match(digest):
            raise MalformedSignature(f"files[{index}].sha256 must be a hex SHA-256")
        seen.add(path)
        files.append(FileEntry(path=path, size=size, sha256=digest))
    recomputed = compute_root_digest(files)
    if recomputed != root:
        raise MalformedSignature(f"root_digest {root} does not match the signed files ({recomputed})")
    return files, root
