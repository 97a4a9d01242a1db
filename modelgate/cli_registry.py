"""``modelgate registry ls|show|alias|revoke|init`` and ``modelgate pull``: the registry from the shell.

Exit codes: 0 done, 1 refused (pull found something that does not verify, or a revoked version),
2 error (unknown model, unreachable server, access denied, bad configuration).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from modelgate.errors import ModelgateError

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)


def _one_line_errors(func: F) -> F:
    """A refusal or an expected error is one line on stderr, whichever group runs the command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from modelgate.registry import PullRefused

        try:
            return func(*args, **kwargs)
        except PullRefused as exc:
            err.print(f"[red]refused:[/red] {exc}", highlight=False)
            sys.exit(EXIT_REFUSED)
        except ModelgateError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def _config(workers: int | None = None) -> Any:
    """Registry settings from the environment, pointed at the embedded services when they run."""
    from modelgate.cli import use_running_services
    from modelgate.registry import RegistryConfig

    use_running_services()
    config = RegistryConfig.from_env()
    return config.with_(workers=workers) if workers else config


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 20 else digest


@click.group("registry")
def registry_group() -> None:
    """The internal model registry: list, inspect, alias, revoke; set it up with init."""


@registry_group.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the indexes as JSON.")
@_one_line_errors
def ls_command(name: str | None, as_json: bool) -> None:
    """List models (or the versions of NAME) with decisions, policies, approvers and aliases."""
    from modelgate.registry import list_names, read_index

    config = _config()
    client = config.client()
    indexes = [read_index(client, config.bucket, n)[0] for n in ([name] if name else list_names(client, config.bucket))]
    present = [i for i in indexes if i is not None]
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in present], indent=2))
        return
    table = Table("model", "version", "decision", "policy", "approvers", "root digest", "published", "aliases", "state")
    for index in present:
        for version, entry in sorted(index.versions.items(), key=lambda kv: kv[1].published_at):
            state = f"[red]revoked[/red]: {entry.revocation.reason}" if entry.revocation else "ok"
            table.add_row(
                index.name,
                version,
                entry.decision,
                entry.policy,
                ", ".join(entry.approvers) or "-",
                _short(entry.root_digest),
                f"{entry.published_at:%Y-%m-%d %H:%M} by {entry.published_by}",
                ", ".join(index.aliases_of(version)) or "-",
                state,
            )
    if name and not present:
        raise ModelgateError(f"{name} is not in the registry")
    Console().print(table)


@registry_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the verified attestation predicate as JSON.")
@_one_line_errors
def show_command(ref: str, as_json: bool) -> None:
    """Show NAME (versions and aliases) or NAME@VERSION / NAME:ALIAS (verified attestation and files)."""
    from modelgate.registry import org_public_key, parse_ref, read_index, resolve, revocation_of, verify_version

    config = _config()
    client = config.client()
    target = parse_ref(ref)
    index, _ = read_index(client, config.bucket, target.name)
    if target.version is None and target.alias is None:
        if index is None:
            raise ModelgateError(f"{target.name} is not in the registry")
        click.echo(f"{index.name}: {len(index.versions)} version(s)")
        for version, entry in sorted(index.versions.items(), key=lambda kv: kv[1].published_at):
            state = f"  REVOKED: {entry.revocation.reason}" if entry.revocation else ""
            click.echo(f"  {version:12} {entry.decision:9} policy {entry.policy}  {_short(entry.root_digest)}{state}")
        for alias, alias_entry in sorted(index.aliases.items()):
            click.echo(
                f"  alias {alias} -> {alias_entry.version} (set by {alias_entry.set_by}, {alias_entry.set_at:%c})"
            )
        return
    version = resolve(index, target.name, target.version, target.alias)
    verified = verify_version(client, config.bucket, target.name, version, org_public_key(config))
    revocation = revocation_of(client, config.bucket, target.name, version, index)
    predicate = verified.predicate
    if as_json:
        body = predicate.model_dump(mode="json")
        body["revocation"] = revocation.model_dump(mode="json") if revocation else None
        click.echo(json.dumps(body, indent=2))
        return
    decision = predicate.decision
    lines = [
        f"{target.name}@{version}  (attestation verified, key {predicate.signer_key_id[:16]})",
        f"  root digest   {verified.root_digest}",
        f"  decision      {decision.decision} by policy {decision.policy} ({_short(decision.policy_digest)})",
        f"  intake run    {decision.run_id}, decided {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC",
        f"  approvers     {', '.join(decision.approvers) or '-'}",
        f"  warnings      {'; '.join(decision.warnings) or '-'}",
        f"  published     {predicate.published_at:%Y-%m-%d %H:%M:%S} UTC by {predicate.published_by}",
        f"  evidence      {predicate.evidence.uri} ({len(predicate.evidence.digests)} files)",
        f"  revoked       {revocation.reason if revocation else 'no'}",
        f"  files         {verified.manifest.file_count}, {_human(verified.manifest.total_bytes)}",
    ]
    lines += [f"    {e.sha256[:16]}  {e.size:>14}  {e.path}" for e in verified.manifest.files]
    click.echo("\n".join(lines))


@registry_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@_one_line_errors
def alias_command(name: str, alias: str, version: str) -> None:
    """Point ALIAS (e.g. prod) of NAME at VERSION; recorded with who and when."""
    from modelgate.registry import set_alias

    entry = set_alias(name, alias, version, config=_config())
    click.echo(f"{name}:{alias} -> {entry.version} (set by {entry.set_by})")


@registry_group.command("revoke")
@click.argument("name")
@click.argument("version")
@click.option("--reason", required=True, help="Why: shown to everyone who tries to pull it.")
@_one_line_errors
def revoke_command(name: str, version: str, reason: str) -> None:
    """Revoke NAME VERSION: pull refuses it from now on (unless --allow-revoked)."""
    from modelgate.registry import revoke

    mark = revoke(name, version, reason, config=_config())
    click.echo(f"revoked {name}@{version}: {mark.reason} (by {mark.revoked_by})")


@registry_group.command("init")
@click.option(
    "--identities",
    "identities_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a SeaweedFS s3.json (admin, publisher, consumer) for `weed s3 -config`, mode 0600.",
)
@_one_line_errors
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
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@click.command("pull")
@click.argument("ref")
@click.option("--dest", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to create.")
@click.option("--allow-revoked", is_flag=True, help="Pull a revoked version anyway (it is still verified).")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel downloads (default 8).")
@click.option("--json", "as_json", is_flag=True, help="Print what was pulled as JSON on stdout.")
@_one_line_errors
def pull_command(ref: str, dest: Path, allow_revoked: bool, workers: int | None, as_json: bool) -> None:
    """Pull REF (NAME, NAME@VERSION or NAME:ALIAS) into DEST, verified end to end.

    The attestation signature (organization key), the manifest and every file's digest are checked
    while downloading; nothing appears at DEST unless all of it verified. An interrupted pull
    resumes where it stopped when run again.
    """
    from modelgate.registry import pull

    config = _config(workers)
    with _progress_bar() as bar:
        task = bar.add_task(ref, total=None)
        model = pull(
            ref,
            None,
            dest,
            config=config,
            allow_revoked=allow_revoked,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        body = {k: v for k, v in model.__dict__.items() if k != "decision"}
        body["decision"] = model.decision.model_dump(mode="json")
        click.echo(json.dumps(body, indent=2, default=str))
        return
    revoked = f" [red](REVOKED: {model.revocation_reason})[/red]" if model.revoked else ""
    reused = f", {_human(model.reused_bytes)} reused from an earlier attempt" if model.reused_bytes else ""
    err.print(
        f"[green]pulled[/green] {model.name}@{model.version} → {model.path}: {model.file_count} files, "
        f"{_human(model.total_bytes)} verified (root {_short(model.root_digest)}, policy {model.decision.policy})"
        f"{reused} in {model.seconds:.1f} s{revoked}",
        highlight=False,
    )


registry_commands: list[click.Command] = [registry_group, pull_command]
