"""Events on decisions and the webhook automation, live: real Prefect server, real webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner

from modelgate import automations
from modelgate.cli import main
from modelgate.events import APPROVED, REJECTED, decision_event
from modelgate.policy.decision import Decision
from modelgate.request import IntakeRequest

CONFIG = Path(__file__).resolve().parents[1] / "infra" / "prefect" / "automations.yaml"
WAIT_S = 60.0


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every POST body (parsed as JSON when it is)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()
                with receiver.arrived:
                    receiver.posts.append({"path": self.path, "body": json.loads(body or b"null")})
                    receiver.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/intake"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait_for(self, version: str, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for post in self.posts:
                    if post["body"] and post["body"].get("version") == version:
                        return post["body"]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no webhook call for version {version} within {timeout:.0f} s: {self.posts}")
                self.arrived.wait(left)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.httpd.shutdown()


def _flat(text: str) -> str:
    """CLI output without rich's line wrapping."""
    return " ".join(text.split())


def _decision(failed: list[str], action: str = "Enforce") -> Decision:
    rule = {"severity": "high", "message": "m", "failure_action": action}
    rules = [{"id": r, "passed": False, **rule} for r in failed] + [{"id": "ok-rule", "passed": True, **rule}]
    return Decision.model_validate(
        {
            "decision": "rejected" if failed and action == "Enforce" else "approved",
            "model": {"name": "m", "version": "1", "root_digest": "sha256:ab"},
            "policy": {"name": "default", "path": "p", "digest": "sha256:cd"},
            "rules": rules,
            "run_id": "r",
        }
    )


def test_decision_event_names_the_model_and_the_failed_rules() -> None:
    event = decision_event(
        name="m", version="1", outcome="rejected", root_digest="sha256:ab", run_id="r",
        decision=_decision(["signature-verified"]), reasons=["signature-verified: no signature"],
    )  # fmt: skip
    assert event.event == REJECTED
    assert event.resource["prefect.resource.id"] == "modelgate.model.m"
    assert event.resource["modelgate.model.root-digest"] == "sha256:ab"
    assert event.payload["failed_rules"] == ["signature-verified"]
    audit = decision_event(
        name="m", version="1", outcome="approved", root_digest=None, run_id="r",
        decision=_decision(["card-present"], action="Audit"), reasons=[],
    )  # fmt: skip
    assert audit.event == APPROVED
    assert audit.payload["failed_rules"] == [] and audit.payload["warned_rules"] == ["card-present"]
    errored = decision_event(
        name="m", version="1", outcome="error", root_digest=None, run_id="r", decision=None,
        reasons=["fetch error: gone"], errored_stages=["fetch"],
    )  # fmt: skip
    assert errored.event == REJECTED and errored.payload["errored_stages"] == ["fetch"]


def test_the_shipped_file_is_valid_and_bad_files_fail_in_one_line(tmp_path: Path) -> None:
    config = automations.load_config(CONFIG)
    assert "modelgate-intake-webhook" in config.webhooks
    assert [a["name"] for a in config.automations] == ["modelgate-intake-rejected", "modelgate-crashed-runs"]
    crashed = config.automations[1]
    assert crashed["trigger"]["posture"] == "Proactive"
    assert crashed["trigger"]["after"] == ["prefect.flow-run.heartbeat"]
    assert crashed["actions"] == [
        {"type": "change-flow-run-state", "state": "CRASHED", "message": crashed["actions"][0]["message"]}
    ]
    bad = tmp_path / "a.yaml"
    text = CONFIG.read_text()
    bad.write_text(text.replace("webhook: modelgate-intake-webhook", "webhook: nowhere"))
    with pytest.raises(automations.AutomationError, match=r"actions\[0\]\.webhook: 'nowhere'"):
        automations.load_config(bad)
    bad.write_text(text.replace("posture: Reactive", "posture: Sideways"))
    with pytest.raises(automations.AutomationError, match=r"automations\[0\]\.trigger"):
        automations.load_config(bad)
    spec = config.webhooks["modelgate-intake-webhook"]
    with pytest.raises(automations.AutomationError, match="not an http"):
        automations.webhook_url(spec, "file:///etc/passwd")
    assert automations.webhook_url(spec, env={"MODELGATE_WEBHOOK_URL": "https://h/x"}) == "https://h/x"
    assert automations.webhook_url(spec, env={}) is None


def test_the_webhook_payload_renders_to_json_as_the_server_renders_it() -> None:
    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template_sync
    from prefect.types._datetime import now

    register_user_template_filters(all_filters)
    (action,) = automations.load_config(CONFIG).automations[0]["actions"]
    sent = decision_event(
        name="odd \"<name>\"", version="1", outcome="rejected", root_digest="sha256:ab", run_id="r",
        decision=_decision(["signature-verified", "scan-safe"]), reasons=["why"],
    )  # fmt: skip
    event = ReceivedEvent(id=uuid4(), occurred=now("UTC"), **sent.model_dump())
    body = json.loads(render_user_template_sync(action["payload"], {"event": event, "flow_run": None}))
    assert body["model"] == 'odd "<name>"' and body["failed_rules"] == ["signature-verified", "scan-safe"]
    assert body["event"] == REJECTED and body["occurred"].startswith(str(event.occurred.year))


@pytest.mark.services
def test_apply_is_idempotent_and_needs_a_url(prefect_server: str, receiver: Receiver, tmp_path: Path) -> None:
    runner = CliRunner()
    other = tmp_path / "other.yaml"
    other.write_text(CONFIG.read_text().replace("modelgate-intake-webhook", "modelgate-other-webhook"))
    missing = runner.invoke(main, ["automations", "apply", "--file", str(other)], env={"MODELGATE_WEBHOOK_URL": ""})
    assert missing.exit_code == 2
    assert "no URL: set MODELGATE_WEBHOOK_URL or pass --webhook-url" in _flat(missing.output)
    for _ in range(2):
        result = runner.invoke(main, ["automations", "apply", "--webhook-url", receiver.url])
        assert result.exit_code == 0, result.output
    assert "updated automation modelgate-intake-rejected" in _flat(result.output)
    named = [a for a in automations.list_automations() if a.name == "modelgate-intake-rejected"]
    assert len(named) == 1 and named[0].enabled
    assert automations.triggers_enabled() is True
    listing = runner.invoke(main, ["automations", "ls", "--json"])
    assert listing.exit_code == 0, listing.output
    (shown,) = [a for a in json.loads(listing.stdout) if a["name"] == "modelgate-intake-rejected"]
    assert "modelgate.intake.rejected" in shown["trigger"] and shown["tags"] == ["modelgate"]


@pytest.mark.services
def test_a_rejected_intake_calls_the_webhook_and_an_approved_one_does_not(
    prefect_server: str, receiver: Receiver, examples: dict[str, Path]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.intake import intake

    result = CliRunner().invoke(main, ["automations", "apply", "--webhook-url", receiver.url])
    assert result.exit_code == 0, result.output
    approved = intake(IntakeRequest(source=str(examples["digits-cnn-signed"]), name="hook-model", version="9.0.0"))
    assert approved.decision == "approved", approved.reasons
    rejected = intake(IntakeRequest(source=str(examples["digits-cnn-tampered"]), name="hook-model", version="9.0.1"))
    assert rejected.decision == "rejected"

    body = receiver.wait_for("9.0.1")
    assert body["event"] == REJECTED
    assert body["model"] == "hook-model" and body["outcome"] == "rejected"
    assert body["root_digest"] == rejected.root_digest
    assert "signature-verified" in body["failed_rules"]
    assert body["run_id"] == rejected.run_id
    assert rejected.run_id in body["flow_run_url"]  # the UI link to the run, rendered by the server

    # The approved run's event reached the server (so the automation saw it) and did not fire.
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + WAIT_S
        names: set[str] = set()
        while APPROVED not in names and time.monotonic() < deadline:
            query = EventFilter(event=EventNameFilter(prefix=["modelgate.intake."])).model_dump(mode="json")
            page = client.request("POST", "/events/filter", json={"filter": query}).json()
            names = {e["event"] for e in page["events"] if e["resource"].get("modelgate.model.version") == "9.0.0"}
            time.sleep(0.5)
    assert names == {APPROVED}
    time.sleep(2)  # any (wrong) call for the approved run would have come by now: it was emitted first
    assert not [p for p in receiver.posts if p["body"] and p["body"].get("version") == "9.0.0"]
