"""OpenSSF model-signing (OMS) bundles, verified with ``cryptography`` only.

A bundle is Sigstore bundle JSON whose DSSE envelope carries an in-toto statement; the
statement's predicate lists every signed file's SHA-256 and its subject is the root
digest over them (docs/signatures.md). We check, in order: the envelope signature
against the trust store, the statement, the subject digest against the listed files,
and the listed files against the model's manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelgate.manifest import Manifest, path_key, root_digest_of
from modelgate.signing.result import SignatureResult, compare_files
from modelgate.signing.truststore import PublicKey, TrustedKey, TrustStore, key_id

BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class MalformedBundle(ValueError):
    """The file is not a bundle this verifier can read; the message is the one-line reason."""


@dataclass
class Bundle:
    """The parts of a Sigstore bundle that verification needs."""

    payload: bytes
    payload_type: str
    signatures: list[bytes]
    hint: str = ""
    embedded: list[PublicKey] = field(default_factory=list)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the envelope signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedBundle(f"{where} must be a non-empty base64 string")
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedBundle(f"{where} is not valid base64") from exc


def _get(doc: Any, *keys: str) -> Any:
    """Walk nested mappings; a missing or non-mapping step is a malformed bundle."""
    value = doc
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise MalformedBundle(f"missing {'.'.join(keys[: depth + 1])}")
        value = value[key]
    return value


def parse_bundle(doc: Any) -> Bundle:
    """Read the envelope, signatures and key material out of bundle JSON."""
    if not isinstance(doc, dict):
        raise MalformedBundle("bundle must be a JSON object")
    media = doc.get("mediaType")
    if not isinstance(media, str) or not media.startswith(BUNDLE_MEDIA_PREFIX):
        raise MalformedBundle(f"not a Sigstore bundle (mediaType {media!r})")
    if "dsseEnvelope" not in doc:
        raise MalformedBundle("bundle has no dsseEnvelope (message-signature bundles are not model signatures)")
    payload = _b64(_get(doc, "dsseEnvelope", "payload"), "dsseEnvelope.payload")
    payload_type = _get(doc, "dsseEnvelope", "payloadType")
    if not isinstance(payload_type, str):
        raise MalformedBundle("dsseEnvelope.payloadType must be a string")
    raw_signatures = _get(doc, "dsseEnvelope", "signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise MalformedBundle("dsseEnvelope.signatures must be a non-empty list")
    signatures = [_b64(_get(s, "sig"), f"dsseEnvelope.signatures[{i}].sig") for i, s in enumerate(raw_signatures)]
    material = _get(doc, "verificationMaterial")
    if not isinstance(material, dict):
        raise MalformedBundle("verificationMaterial must be an object")
    bundle = Bundle(payload=payload, payload_type=payload_type, signatures=signatures)
    public_key = material.get("publicKey")
    if isinstance(public_key, dict):
        hint = public_key.get("hint")
        bundle.hint = hint.strip().lower() if isinstance(hint, str) else ""
        if public_key.get("rawBytes"):
            bundle.embedded.append(_load_der_key(_b64(public_key["rawBytes"], "publicKey.rawBytes")))
    for where, cert in _certificates(material):
        bundle.embedded.append(_cert_key(_b64(cert, where)))
    return bundle


def _certificates(material: dict[str, Any]) -> list[tuple[str, Any]]:
    certs: list[tuple[str, Any]] = []
    if isinstance(material.get("certificate"), dict):
        certs.append(("certificate.rawBytes", material["certificate"].get("rawBytes")))
    chain = material.get("x509CertificateChain")
    if isinstance(chain, dict) and isinstance(chain.get("certificates"), list) and chain["certificates"]:
        leaf = chain["certificates"][0]
        certs.append(("x509CertificateChain.certificates[0].rawBytes", _get(leaf, "rawBytes")))
    return certs


def _supported(key: object) -> PublicKey:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_HASH:
        return key
    raise MalformedBundle(f"bundle key type {type(key).__name__} is not supported")


def _load_der_key(data: bytes) -> PublicKey:
    try:
        return _supported(serialization.load_der_public_key(data))
    except (ValueError, TypeError) as exc:
        raise MalformedBundle("publicKey.rawBytes is not a DER public key") from exc


def _cert_key(data: bytes) -> PublicKey:
    try:
        return _supported(x509.load_der_x509_certificate(data).public_key())
    except (ValueError, TypeError) as exc:
        raise MalformedBundle("bundle certificate is not a DER X.509 certificate") from exc


def verify_signature(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` over ``message`` verifies with ``key`` (ECDSA hash chosen by curve, as OMS does)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def _verifies(key: PublicKey, bundle: Bundle) -> bool:
    message = pae(bundle.payload_type, bundle.payload)
    return any(verify_signature(key, sig, message) for sig in bundle.signatures)


def _designated(bundle: Bundle, store: TrustStore) -> list[TrustedKey]:
    """Trusted keys the bundle names: by its key hint or by an embedded key."""
    named = store.by_key_id(bundle.hint) if bundle.hint else []
    for key in bundle.embedded:
        found = store.find(key)
        if found is not None and found not in named:
            named.append(found)
    return named


def verify_oms(doc: Any, manifest: Manifest, store: TrustStore, path: str = "") -> SignatureResult:
    """Verdict for one OMS bundle (already parsed from JSON) against the model's manifest."""

    def result(status: str, reason: str = "", **extra: Any) -> SignatureResult:
        return SignatureResult.model_validate(
            {"status": status, "format": "oms", "reason": reason, "path": path, **extra}
        )

    try:
        bundle = parse_bundle(doc)
    except MalformedBundle as exc:
        return result("invalid", f"malformed OMS bundle: {exc}")
    designated = _designated(bundle, store)
    others = [k for k in store.keys if k not in designated]
    signer = next((k for k in designated + others if _verifies(k.key, bundle)), None)
    if signer is None:
        if designated:
            first = designated[0]
            return result(
                "invalid",
                f"signature does not verify with trusted key {first.key_id[:16]} of {first.publisher}",
                key_id=first.key_id,
            )
        for key in bundle.embedded:
            if _verifies(key, bundle):
                return result(
                    "untrusted",
                    f"signed by key {key_id(key)[:16]}, which is not in the trust store",
                    key_id=key_id(key),
                )
        if bundle.embedded:
            return result("invalid", "signature does not verify with the key embedded in the bundle")
        hint = f"key {bundle.hint[:16]}" if bundle.hint else "a key the bundle does not name"
        return result("untrusted", f"no trusted key verifies the signature (signed by {hint})", key_id=bundle.hint)
    by = f"signed by {signer.publisher}, but "
    try:
        signed, subject = read_statement(bundle)
    except MalformedBundle as exc:
        return result("invalid", by + str(exc), key_id=signer.key_id)
    missing, extra, changed, reason = compare_files(dict(signed), manifest, with_size=False)
    if not reason and subject != manifest.root_digest:
        reason = f"signed root digest {subject} differs from the model's {manifest.root_digest}"
    fields: dict[str, Any] = {"key_id": signer.key_id, "missing": missing, "extra": extra, "changed": changed}
    if reason:
        return result("invalid", by + reason, **fields)
    return result("verified", signer=signer.publisher, **fields)


def read_statement(bundle: Bundle) -> tuple[dict[str, str], str]:
    """Signed files (path -> hex SHA-256) and subject digest of a verified envelope's statement."""
    if bundle.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedBundle(f"payload type {bundle.payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = json.loads(bundle.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBundle(f"signed payload is not JSON: {exc}") from exc
    if _get(statement, "_type") != STATEMENT_TYPE:
        raise MalformedBundle(f"statement _type is not {STATEMENT_TYPE}")
    predicate_type = _get(statement, "predicateType")
    if predicate_type != PREDICATE_TYPE:
        raise MalformedBundle(f"unsupported predicateType {predicate_type!r} (expected {PREDICATE_TYPE})")
    subjects = _get(statement, "subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise MalformedBundle("statement must have exactly one subject")
    subject = _get(subjects[0], "digest", "sha256")
    if not isinstance(subject, str) or not HEX_DIGEST.match(subject):
        raise MalformedBundle("subject digest.sha256 is not a hex SHA-256")
    _check_serialization(_get(statement, "predicate", "serialization"))
    resources = _get(statement, "predicate", "resources")
    if not isinstance(resources, list):
        raise MalformedBundle("predicate.resources must be a list")
    files: dict[str, str] = {}
    for index, item in enumerate(resources):
        name, digest = _resource(item, index)
        if name in files:
            raise MalformedBundle(f"predicate.resources lists {name!r} twice")
        files[name] = digest
    listed = root_digest_of(files.values())
    if listed != "sha256:" + subject:
        raise MalformedBundle(f"subject digest sha256:{subject} does not match the signed file digests ({listed})")
    return dict(sorted(files.items(), key=lambda kv: path_key(kv[0]))), "sha256:" + subject


def _check_serialization(serialization_args: Any) -> None:
    method = _get(serialization_args, "method")
    if method == "shards":
        raise MalformedBundle("serialization method 'shards' is not supported (sign with method 'files')")
    if method != "files":
        raise MalformedBundle(f"unknown serialization method {method!r}")
    hash_type = serialization_args.get("hash_type", "sha256")
    if hash_type != "sha256":
        raise MalformedBundle(f"hash_type {hash_type!r} is not supported (sign with sha256)")


def _resource(item: Any, index: int) -> tuple[str, str]:
    where = f"predicate.resources[{index}]"
    if not isinstance(item, dict):
        raise MalformedBundle(f"{where} must be an object")
    name, algorithm, digest = item.get("name"), item.get("algorithm"), item.get("digest")
    if not isinstance(name, str) or not name:
        raise MalformedBundle(f"{where}.name must be a non-empty string")
    if algorithm != "sha256":
        raise MalformedBundle(f"{where} ({name}) uses algorithm {algorithm!r}, only sha256 is supported")
    if not isinstance(digest, str) or not HEX_DIGEST.match(digest):
        raise MalformedBundle(f"{where} ({name}) digest is not a hex SHA-256")
    return name, digest
