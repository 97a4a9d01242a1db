"""One entry point for the intake: find the model's signature(s) and return one verdict.

The format is decided by the file's content, not its name. When a folder carries both
``model.sig`` and ``modelgate.sig`` both are checked and the stricter verdict wins: any
``invalid`` signature makes the model invalid (fail closed), otherwise one ``verified``
signature is enough.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelgate.manifest import SIGNATURE_FILES, Manifest
from modelgate.signing.ed25519 import FORMAT as ED25519_FORMAT
from modelgate.signing.ed25519 import verify_ed25519
from modelgate.signing.oms import verify_oms
from modelgate.signing.result import SignatureFormat, SignatureResult
from modelgate.signing.truststore import TrustStore

MAX_SIGNATURE_BYTES = 64 << 20
_GUESS: dict[str, SignatureFormat] = {"model.sig": "oms", "modelgate.sig": "ed25519"}


def find_signatures(model_dir: Path, signature_path: Path | None = None) -> list[Path]:
    """The signature files to check: the one named (relative to the model folder if found there), else the defaults."""
    if signature_path is not None:
        named = Path(signature_path)
        if not named.is_absolute() and (Path(model_dir) / named).exists():
            named = Path(model_dir) / named
        return [named]
    return [Path(model_dir) / name for name in SIGNATURE_FILES if (Path(model_dir) / name).is_file()]


def verify_file(path: Path, manifest: Manifest, trust_store: TrustStore) -> SignatureResult:
    """Verdict for one signature file of either format."""
    guess = _GUESS.get(path.name, "none")

    def invalid(reason: str) -> SignatureResult:
        return SignatureResult(status="invalid", format=guess, reason=reason, path=str(path))

    if path.is_symlink():
        return invalid(f"signature file is a symbolic link: {path}")
    try:
        if path.stat().st_size > MAX_SIGNATURE_BYTES:
            return invalid(f"signature file is larger than {MAX_SIGNATURE_BYTES >> 20} MiB: {path}")
        data = path.read_bytes()
    except OSError as exc:
        return invalid(f"cannot read signature file {path}: {exc.strerror or exc}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return invalid(f"signature file {path.name} is not JSON ({exc.__class__.__name__}: {exc})")
    if isinstance(doc, dict) and "format" in doc:
        if doc["format"] != ED25519_FORMAT:
            return invalid(f"unknown signature format {doc['format']!r} in {path.name}")
        return verify_ed25519(doc, manifest, trust_store, str(path))
    if isinstance(doc, dict) and ("dsseEnvelope" in doc or "mediaType" in doc):
        return verify_oms(doc, manifest, trust_store, str(path))
    return invalid(f"{path.name} is neither an OMS bundle nor a {ED25519_FORMAT} signature")


def verify_model(
    model_dir: Path, manifest: Manifest, trust_store: TrustStore, signature_path: Path | None = None
) -> SignatureResult:
    """The model's signature verdict: verified, unsigned, invalid or untrusted. Never raises for a verdict."""
    paths = find_signatures(model_dir, signature_path)
    if not paths:
        return SignatureResult(status="unsigned", format="none", reason="no signature file (model.sig, modelgate.sig)")
    if not paths[0].exists() and not paths[0].is_symlink():
        return SignatureResult(
            status="unsigned", format="none", reason=f"signature file not found: {paths[0]}", path=str(paths[0])
        )
    results = [verify_file(path, manifest, trust_store) for path in paths]
    for status in ("invalid", "verified"):
        chosen = next((r for r in results if r.status == status), None)
        if chosen is not None:
            return chosen
    return results[0]
