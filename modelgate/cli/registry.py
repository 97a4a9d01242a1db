"""``modelgate registry ls|show|alias|revoke|sign-index|init`` and ``modelgate pull``: the registry from the shell.

Exit codes: 0 done, 1 refused (pull found something that does not verify, or a revoked version),
2 error (unknown model, unreachable server, access denied, bad configuration).
Everything printed that comes from the registry (names, reasons, who) is plain text, never markup.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from modelgate.cli.common import EXIT_VERDICT, GuardedCommand, GuardedGroup
from modelgate.errors import ModelgateError
from modelgate.terminal import binary_size, echo, error_line, safe_text, styled, table

EXIT_REFUSED = EXIT_VERDICT


def _refused_line(message: str) -> None:
    """``refused: <message>`` on stderr, one line of plain text."""
    error_line(message, "refused")


def _config(workers: int | None = None) -> Any:
    """Registry settings from the environment, pointed at the embedded services when they run."""
    from modelgate.cli.common import use_running_services
    from modelgate.registry import RegistryConfig

    use_running_services()
    config = RegistryConfig.from_env()
    return config.with_(workers=workers) if workers else config


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 20 else digest


@click.group("registry", cls=GuardedGroup)
def registry_group() -> None:
    """The internal model registry: list, inspect, alias, revoke; set it up with init."""


@registry_group.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the verified indexes as JSON.")
def ls_command(name: str | None, as_json: bool) -> None:
    """List models (or the versions of NAME) with decisions, policies, approvers and aliases.

    Every index is verified (organization key, rollback state) first; a model whose index is
    refused is named on stderr and the exit status is 1.
    """
    from modelgate.registry import IndexRefused, list_names, org_public_key, trusted_index

    config = _config()
    client = config.client()
    key = org_public_key(config)
    present = []
    refused: list[IndexRefused] = []
    for model in [name] if name else list_names(client, config.bucket):
        try:
            loaded = trusted_index(client, config, model, key)
        except IndexRefused as exc:
            if name:
                raise
            refused.append(exc)
            continue
        if loaded is not None:
            present.append(loaded.index)
    if name and not present:
        raise ModelgateError(f"{name} is not in the registry")
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in present], indent=2))
    else:
        click.echo(_versions_table(present))
    for refusal in refused:
        _refused_line(str(refusal))
    if refused:
        sys.exit(EXIT_REFUSED)


def _versions_table(indexes: list[Any]) -> str:
    headers = ["model", "version", "decision", "policy", "approvers", "root digest", "published", "aliases", "state"]
    rows: list[list[str]] = []
    styles: list[list[str | None]] = []
    for index in indexes:
        for version, entry in sorted(index.versions.items(), key=lambda kv: kv[1].published_at):
            state = f"revoked: {entry.revocation.reason}" if entry.revocation else "revoked" if entry.revoked else "ok"
            rows.append(
                [
                    index.name,
                    version,
                    entry.decision,
                    entry.policy,
                    ", ".join(entry.approvers) or "-",
                    _short(entry.root_digest),
                    f"{entry.published_at:%Y-%m-%d %H:%M} by {entry.published_by}",
                    ", ".join(index.aliases_of(version)) or "-",
                    state,
                ]
            )
            styles.append([*([None] * 8), "red" if entry.revoked else None])
    return table(headers, rows, styles=styles)


@registry_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the verified attestation predicate as JSON.")
def show_command(ref: str, as_json: bool) -> None:
    """Show NAME (versions and aliases) or NAME@VERSION / NAME:ALIAS (verified attestation and files)."""
    from modelgate.registry import org_public_key, parse_ref, resolve_verified, trusted_index

    config = _config()
    client = config.client()
    key = org_public_key(config)
    target = parse_ref(ref)
    if target.version is None and target.alias is None:
        loaded = trusted_index(client, config, target.name, key)
        if loaded is None:
            raise ModelgateError(f"{target.name} is not in the registry")
        index = loaded.index
        click.echo(
            f"{index.name}: {len(index.versions)} version(s)  (index verified: sequence {index.sequence}, "
            f"key {index.signer_key_id[:16]})"
        )
        for version, entry in sorted(index.versions.items(), key=lambda kv: kv[1].published_at):
            state = f"  REVOKED: {entry.revocation.reason}" if entry.revocation else ""
            click.echo(
                safe_text(
                    f"  {version:12} {entry.decision:9} policy {entry.policy}  {_short(entry.root_digest)}{state}"
                )
            )
        for alias, alias_entry in sorted(index.aliases.items()):
            click.echo(
                safe_text(
                    f"  alias {alias} -> {alias_entry.version} (set by {alias_entry.set_by}, {alias_entry.set_at:%c})"
                )
            )
        return
    resolved = resolve_verified(client, config, target, key)
    version, verified, revocation = resolved.version, resolved.verified, resolved.revocation
    predicate = verified.predicate
    if as_json:
        body = predicate.model_dump(mode="json")
        body["revocation"] = revocation.model_dump(mode="json") if revocation else None
        body["index_sequence"] = resolved.index.sequence
        click.echo(json.dumps(body, indent=2))
        return
    decision = predicate.decision
    lines = [
        f"{target.name}@{version}  (attestation verified, key {predicate.signer_key_id[:16]}; "
        f"index sequence {resolved.index.sequence})",
        f"  root digest   {verified.root_digest}",
        f"  decision      {decision.decision} by policy {decision.policy} ({_short(decision.policy_digest)})",
        f"  intake run    {decision.run_id}, decided {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC",
        f"  approvers     {', '.join(decision.approvers) or '-'}",
        f"  warnings      {'; '.join(decision.warnings) or '-'}",
        f"  published     {predicate.published_at:%Y-%m-%d %H:%M:%S} UTC by {predicate.published_by}",
        f"  evidence      {predicate.evidence.uri} ({len(predicate.evidence.digests)} files)",
        f"  revoked       {revocation.reason if revocation else 'no'}",
        f"  files         {verified.manifest.file_count}, {binary_size(verified.manifest.total_bytes)}",
    ]
    lines += [f"    {e.sha256[:16]}  {e.size:>14}  {e.path}" for e in verified.manifest.files]
    click.echo("\n".join(safe_text(line) for line in lines))


@registry_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
def alias_command(name: str, alias: str, version: str) -> None:
    """Point ALIAS (e.g. prod) of NAME at VERSION; recorded with who and when."""
    from modelgate.registry import set_alias

    entry = set_alias(name, alias, version, config=_config())
    click.echo(f"{name}:{alias} -> {entry.version} (set by {entry.set_by})")


@registry_group.command("revoke")
@click.argument("name")
@click.argument("version")
@click.option("--reason", required=True, help="Why: shown to everyone who tries to pull it.")
def revoke_command(name: str, version: str, reason: str) -> None:
    """Revoke NAME VERSION: pull refuses it from now on (unless --allow-revoked)."""
    from modelgate.registry import revoke

    mark = revoke(name, version, reason, config=_config())
    click.echo(safe_text(f"revoked {name}@{version}: {mark.reason} (by {mark.revoked_by})"))


@registry_group.command("sign-index")
@click.argument("names", nargs=-1)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Replace the index even if it is signed, or does not verify: rebuilt from the verified attestations "
    "and revocation marks (aliases only from an index that verifies or is unsigned).",
)
@click.option("--sequence", type=click.IntRange(min=1), help="The sequence to sign with (default: the next one).")
def sign_index_command(names: tuple[str, ...], rebuild: bool, sequence: int | None) -> None:
    """Sign the index of NAMES (default: every model) with the organization key.

    For indexes written before indexes were signed: the versions are taken from their verified
    attestations, revocations from the revocation marks and the old index, aliases from the old
    index where they name a committed, unrevoked version. Publishers re-sign on their next write
    anyway; this signs without waiting for one. An index that already verifies is left alone.
    """
    from modelgate.registry import list_names, sign_index

    config = _config()
    client = config.client()
    if sequence is not None and len(names) != 1:
        raise ModelgateError("--sequence needs exactly one NAME")
    for name in names or tuple(list_names(client, config.bucket)):
        done = sign_index(name, client=client, config=config, rebuild=rebuild, sequence=sequence)
        index = done.index
        if not done.written:
            if done.found == "missing":
                click.echo(f"{name}: no committed version, no index to sign")
            else:
                click.echo(f"{name}: index already signed (sequence {index.sequence}), left as it is")
            continue
        revoked = sum(1 for v in index.versions.values() if v.revoked)
        aliases = ", ".join(f"{a} -> {e.version}" for a, e in sorted(index.aliases.items())) or "none"
        click.echo(
            safe_text(
                f"{name}: signed the {done.found} index at sequence {index.sequence}: {len(index.versions)} "
                f"version(s) from verified attestations, {revoked} revoked, aliases {aliases}"
            )
        )
        for version, why in sorted(done.skipped.items()):
            click.echo(safe_text(f"  left out version {version}: {why}"))
        for alias, why in sorted(done.dropped_aliases.items()):
            click.echo(safe_text(f"  dropped alias {alias}: {why}"))


@registry_group.command("init")
@click.option(
    "--identities",
    "identities_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a SeaweedFS s3.json (admin, publisher, consumer) for `weed s3 -config`, mode 0600.",
)
def init_command(identities_out: Path | None) -> None:
    """Set up the registry: the organization key pair (if missing) and the registry bucket.

    The key pair goes to $MODELGATE_HOME/keys/ (private key mode 0600). The embedded S3 server
    gets its identities from infra/local/s3-identities.json at `modelgate services up`.
    """
    from modelgate import services
    from modelgate.registry import ensure_key_pair
    from modelgate.registry.store import translate
    from modelgate.settings import load_settings

    config = _config()
    private, public, created = ensure_key_pair(config.keys_dir)
    click.echo(f"{'created' if created else 'kept'} organization key {private} (public key {public})")
    client = config.client()
    try:
        client.head_bucket(Bucket=config.bucket)
        click.echo(f"bucket {config.bucket} exists")
    except Exception:  # noqa: BLE001 - a missing bucket is what init is for
        try:
            client.create_bucket(Bucket=config.bucket)
        except Exception as exc:
            raise translate(exc, "create bucket", config.bucket) from exc
        click.echo(f"created bucket {config.bucket}")
    if identities_out is not None:
        settings = load_settings()
        spec = services.load_specs(settings)["s3"]
        template = settings.project / "infra" / "local" / "s3-identities.json"
        services.render_json_file(template, identities_out, spec, settings.services_dir / "s3")
        click.echo(f"wrote SeaweedFS identities to {identities_out}")
    publisher, consumer = services.s3_identity("publisher")[0], services.s3_identity("consumer")[0]
    click.echo(
        f"publish with MODELGATE_REGISTRY_ACCESS_KEY={publisher}, pull with MODELGATE_REGISTRY_ACCESS_KEY={consumer} "
        "(and the matching MODELGATE_REGISTRY_SECRET_KEY)"
    )


def _progress_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),  # file names are text, not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@click.command("pull", cls=GuardedCommand)
@click.argument("ref")
@click.option("--dest", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to create.")
@click.option("--allow-revoked", is_flag=True, help="Pull a revoked version anyway (it is still verified).")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel downloads (default 8).")
@click.option("--json", "as_json", is_flag=True, help="Print what was pulled as JSON on stdout.")
@click.option(
    "--min-sequence",
    type=click.IntRange(min=1),
    help="Refuse an index older than this sequence (a pin for a consumer without state of its own).",
)
def pull_command(
    ref: str, dest: Path, allow_revoked: bool, workers: int | None, as_json: bool, min_sequence: int | None
) -> None:
    """Pull REF (NAME, NAME@VERSION or NAME:ALIAS) into DEST, verified end to end.

    The signed index (organization key; not older than the one this consumer saw before), the
    attestation signature, the manifest and every file's digest are checked; nothing appears at
    DEST unless all of it verified. An interrupted pull resumes where it stopped when run again.
    """
    from rich.markup import escape

    from modelgate.registry import pull

    config = _config(workers)
    with _progress_bar() as bar:
        task = bar.add_task(escape(safe_text(ref)), total=None)
        model = pull(
            ref,
            None,
            dest,
            config=config,
            allow_revoked=allow_revoked,
            min_sequence=min_sequence,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        body = {k: v for k, v in model.__dict__.items() if k != "decision"}
        body["decision"] = model.decision.model_dump(mode="json")
        click.echo(json.dumps(body, indent=2, default=str))
        return
    revoked = f" (REVOKED: {model.revocation_reason})" if model.revoked else ""
    reused = f", {binary_size(model.reused_bytes)} reused from an earlier attempt" if model.reused_bytes else ""
    text = safe_text(
        f"{model.name}@{model.version} → {model.path}: {model.file_count} files, "
        f"{binary_size(model.total_bytes)} verified (root {_short(model.root_digest)}, policy {model.decision.policy}, "
        f"index sequence {model.index_sequence}){reused} in {model.seconds:.1f} s{revoked}"
    )
    echo(f"{styled('pulled', 'green', sys.stderr)} {text}", sys.stderr)


registry_commands: list[click.Command] = [registry_group, pull_command]
