"""Prefect automations from ``infra/prefect/automations.yaml``: applied idempotently, listed for people.

The file holds webhooks (Prefect ``Webhook`` blocks; the URL comes from an environment variable
so it never lands in git) and automations in Prefect 3's own shape, with ``webhook: NAME`` in an
action standing for the block's id. Applying matches both by name: created when missing, updated
in place otherwise (duplicates of a name are removed), so a setup job can run it on every deploy.
Automations only fire where the server runs its triggers service
(``PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED``, on by default; it also runs the actions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from modelgate.errors import ModelgateError
from modelgate.settings import load_settings

KIND = "PrefectAutomations"


class AutomationError(ModelgateError):
    """The automations file is invalid, or the Prefect server refused or could not be reached."""


@dataclass(frozen=True)
class WebhookSpec:
    name: str
    url_env: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AutomationsConfig:
    path: Path
    webhooks: dict[str, WebhookSpec]
    automations: list[dict[str, Any]]


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did to one object on the server."""

    kind: str  # "webhook" | "automation"
    name: str
    id: str
    action: str  # "created" | "updated" | "kept"


@dataclass(frozen=True)
class AutomationSummary:
    id: str
    name: str
    enabled: bool
    trigger: str
    actions: list[str]
    tags: list[str]


def default_path() -> Path:
    return load_settings().project / "infra" / "prefect" / "automations.yaml"


def load_config(path: Path | None = None) -> AutomationsConfig:
    """Read and check the automations file (one error line naming the file and the field)."""
    path = path or default_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AutomationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise AutomationError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise AutomationError(f"{path}: kind must be {KIND}")
    webhooks: dict[str, WebhookSpec] = {}
    for name, body in (raw.get("webhooks") or {}).items():
        if not isinstance(body, dict) or not body.get("url_env"):
            raise AutomationError(f"{path}: webhooks.{name}.url_env: required (the variable that holds the URL)")
        webhooks[str(name)] = WebhookSpec(
            name=str(name),
            url_env=str(body["url_env"]),
            method=str(body.get("method", "POST")).upper(),
            headers={str(k): str(v) for k, v in (body.get("headers") or {}).items()},
        )
    automations = raw.get("automations") or []
    for index, automation in enumerate(automations):
        if not isinstance(automation, dict) or not automation.get("name"):
            raise AutomationError(f"{path}: automations[{index}].name: required")
        for position, action in enumerate(automation.get("actions") or []):
            ref = action.get("webhook") if isinstance(action, dict) else None
            if ref is not None and ref not in webhooks:
                raise AutomationError(
                    f"{path}: automations[{index}].actions[{position}].webhook: {ref!r} is not under webhooks"
                )
    _validate(path, automations, {name: "00000000-0000-0000-0000-000000000000" for name in webhooks})
    return AutomationsConfig(path=path, webhooks=webhooks, automations=list(automations))


def _resolve(automation: Mapping[str, Any], block_ids: Mapping[str, str]) -> dict[str, Any]:
    """The automation as Prefect takes it: ``webhook: NAME`` becomes ``block_document_id``."""
    body = dict(automation)
    actions = []
    for action in body.get("actions") or []:
        action = dict(action)
        if "webhook" in action:
            action["block_document_id"] = block_ids[action.pop("webhook")]
        actions.append(action)
    body["actions"] = actions
    return body


def _validate(path: Path, automations: list[dict[str, Any]], block_ids: Mapping[str, str]) -> list[Any]:
    from prefect.automations import AutomationCore
    from pydantic import ValidationError

    models = []
    for index, automation in enumerate(automations):
        try:
            models.append(AutomationCore.model_validate(_resolve(automation, block_ids)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise AutomationError(f"{path}: automations[{index}].{where}: {first['msg']}") from exc
    return models


def webhook_url(spec: WebhookSpec, override: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The URL for a webhook: the override, else its environment variable; checked to be http(s)."""
    url = override or (env if env is not None else os.environ).get(spec.url_env) or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AutomationError(f"webhook {spec.name}: {url!r} is not an http(s) URL")
    return url


def _require_server() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise AutomationError(
            "no Prefect server: start one (modelgate services up) or set PREFECT_API_URL; "
            "automations on an ephemeral server would vanish with it"
        )
    return str(url)


def _apply_webhook(spec: WebhookSpec, url: str | None) -> Applied:
    from prefect.blocks.webhook import Webhook
    from prefect.exceptions import ObjectNotFound

    existing: Any = None
    try:
        existing = Webhook.load(spec.name, validate=False)
    except (ValueError, ObjectNotFound):
        existing = None
    if url is None:
        if existing is None:
            raise AutomationError(f"webhook {spec.name}: no URL: set {spec.url_env} or pass --webhook-url")
        return Applied("webhook", spec.name, str(existing._block_document_id), "kept")
    block = Webhook(method=spec.method, url=url, headers=spec.headers)  # type: ignore[arg-type]
    block_id = block.save(spec.name, overwrite=True)
    return Applied("webhook", spec.name, str(block_id), "updated" if existing is not None else "created")


def apply(config: AutomationsConfig | None = None, *, webhook_url_override: str | None = None) -> list[Applied]:
    """Create or update every webhook block and automation of the file on the current Prefect server."""
    from prefect.client.orchestration import get_client

    config = config or load_config()
    server = _require_server()
    try:
        webhooks = [_apply_webhook(spec, webhook_url(spec, webhook_url_override)) for spec in config.webhooks.values()]
        models = _validate(config.path, config.automations, {w.name: w.id for w in webhooks})
        applied = list(webhooks)
        with get_client(sync_client=True) as client:
            for model in models:
                found = client.read_automations_by_name(model.name)
                if not found:
                    applied.append(Applied("automation", model.name, str(client.create_automation(model)), "created"))
                    continue
                keep, *duplicates = sorted(found, key=lambda a: str(a.id))
                client.update_automation(keep.id, model)
                for duplicate in duplicates:
                    client.delete_automation(duplicate.id)
                applied.append(Applied("automation", model.name, str(keep.id), "updated"))
    except AutomationError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for people: which server, what went wrong
        raise AutomationError(f"applying automations to {server}: {type(exc).__name__}: {exc}") from exc
    return applied


def list_automations() -> list[AutomationSummary]:
    """Every automation on the current server (not only modelgate's), for ``modelgate automations ls``."""
    from prefect.client.orchestration import get_client

    server = _require_server()
    try:
        with get_client(sync_client=True) as client:
            found = client.read_automations()
    except Exception as exc:  # noqa: BLE001
        raise AutomationError(f"reading automations from {server}: {type(exc).__name__}: {exc}") from exc
    return [
        AutomationSummary(
            id=str(a.id),
            name=a.name,
            enabled=a.enabled,
            trigger=a.trigger.describe_for_cli(),
            actions=[action.describe_for_cli() for action in a.actions],
            tags=list(a.tags),
        )
        for a in sorted(found, key=lambda a: a.name)
    ]


def triggers_enabled() -> bool | None:
    """Whether the server runs the triggers service (None when its settings cannot be read)."""
    from prefect.client.orchestration import get_client

    _require_server()
    try:
        with get_client(sync_client=True) as client:
            response = client.request("GET", "/admin/settings")
            settings = response.json()
        return bool(settings["server"]["services"]["triggers"]["enabled"])
    except Exception:  # noqa: BLE001 - an older or locked-down server: we just cannot tell
        return None
