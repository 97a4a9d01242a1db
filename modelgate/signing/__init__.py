"""Signature verification: OMS bundles and detached Ed25519 signatures, against a trust store.

Implemented with ``cryptography`` only (no ``model_signing``, ``sigstore`` or pyOpenSSL at
runtime), so registry consumers can verify with the core package.
"""

from modelgate.signing.ed25519 import sign_ed25519, verify_ed25519
from modelgate.signing.oms import verify_oms
from modelgate.signing.result import SignatureResult
from modelgate.signing.truststore import TrustedKey, TrustStore, key_id, load_trust_store
from modelgate.signing.verify import verify_file, verify_model

__all__ = [
    "SignatureResult",
    "TrustStore",
    "TrustedKey",
    "key_id",
    "load_trust_store",
    "sign_ed25519",
    "verify_ed25519",
    "verify_file",
    "verify_model",
    "verify_oms",
]
