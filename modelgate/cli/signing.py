"""``modelgate manifest | verify | keygen | sign``: hashing and signatures from the shell.

Exit codes: ``verify`` exits 0 only when the signature is verified, 1 for any other
verdict, 2 for an error (unreadable folder, broken trust store, bad key).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from modelgate.cli.common import EXIT_OK, EXIT_VERDICT, GuardedCommand
from modelgate.errors import ModelgateError
from modelgate.terminal import binary_size

EXIT_NOT_VERIFIED = EXIT_VERDICT
_folder = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("manifest", cls=GuardedCommand)
@click.argument("path", type=_folder)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--workers", type=click.IntRange(min=1), help="Hashing threads (default: from the CPU count).")
def manifest_command(path: Path, as_json: bool, workers: int | None) -> None:
    """Hash every file of the model folder PATH and print its OMS-compatible root digest."""
    from modelgate.manifest import build_manifest

    manifest = build_manifest(path, workers=workers)
    if as_json:
        click.echo(manifest.model_dump_json(indent=2))
        return
    click.echo(f"root digest  {manifest.root_digest}")
    size = binary_size(manifest.total_bytes)
    click.echo(f"files        {manifest.file_count}, {size} ({manifest.total_bytes} bytes)")
    for entry in manifest.files:
        click.echo(f"  {entry.sha256}  {entry.size:>14}  {entry.path}")


@click.command("verify", cls=GuardedCommand)
@click.argument("path", type=_folder)
@click.option(
    "--signature", type=click.Path(path_type=Path), help="Signature file (default: model.sig / modelgate.sig)."
)
@click.option(
    "--trust-store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust store YAML (default: $MODELGATE_TRUST_STORE or policies/trust/publishers.yaml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify_command(path: Path, signature: Path | None, trust_store: Path | None, as_json: bool) -> None:
    """Verify the signature of the model folder PATH; exit 0 only if verified."""
    from modelgate.manifest import build_manifest
    from modelgate.settings import load_settings
    from modelgate.signing import load_trust_store, verify_model

    store = load_trust_store(trust_store or load_settings().trust_store)
    result = verify_model(path, build_manifest(path), store, signature)
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        who = f" by {result.signer}" if result.signer else ""
        key = f" (key {result.key_id[:16]})" if result.key_id else ""
        click.echo(
            f"{result.status}: {result.format} signature{who}{key}" if result.format != "none" else result.status
        )
        if result.reason:
            click.echo(f"  reason: {result.reason}")
        for label, paths in (("changed", result.changed), ("missing", result.missing), ("not signed", result.extra)):
            for item in paths:
                click.echo(f"  {label}: {item}")
    sys.exit(EXIT_OK if result.verified else EXIT_NOT_VERIFIED)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start; refuse to overwrite a key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ModelgateError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


@click.command("keygen", cls=GuardedCommand)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["ed25519", "ecdsa-p256", "ecdsa-p384"]),
    default="ed25519",
    show_default=True,
)
@click.option("--out", "prefix", required=True, help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.")
def keygen_command(key_type: str, prefix: str) -> None:
    """Generate a signing key pair (Ed25519 for modelgate.sig, ECDSA for OMS bundles)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from modelgate.signing import key_id

    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1() if key_type == "ecdsa-p256" else ec.SECP384R1())
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    if pub_path.exists():
        raise ModelgateError(f"{pub_path} already exists; refusing to overwrite a key")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(
        key_path,
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    public = private.public_key()
    pub_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    click.echo(f"private key  {key_path} (mode 0600; keep it secret)")
    click.echo(f"public key   {pub_path} (add it to the trust store as type {key_type.split('-')[0]})")
    click.echo(f"key id       {key_id(public)}")


@click.command("sign", cls=GuardedCommand)
@click.argument("path", type=_folder)
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sign_command(path: Path, key_file: Path) -> None:
    """Sign the model folder PATH with an Ed25519 key; writes PATH/modelgate.sig."""
    from modelgate.manifest import build_manifest
    from modelgate.signing import sign_ed25519

    document = sign_ed25519(build_manifest(path), key_file.read_bytes())
    target = path / "modelgate.sig"
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    click.echo(f"signed {document['manifest']['root_digest']} -> {target} (key {document['keyid'][:16]})")


signing_commands: list[click.Command] = [manifest_command, verify_command, keygen_command, sign_command]
