"""`modelgate demo run`: build the example models and take each through the intake flow."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from modelgate.settings import load_settings
from modelgate.terminal import echo, styled, table

# The organization's evaluation data of the demo: scikit-learn's bundled digits, as the model sees them.
EVAL_DATA = "sklearn:digits"

# The example whose intake names a pinned reference checkpoint (the plain, unsigned base release).
REFERENCE_FOR = "digits-cnn-signed"

# What the default policy should decide for each example (docs/examples.md).
EXPECTED = {
    "digits-cnn-signed": "approved",
    "digits-cnn-unsigned": "rejected",
    "digits-cnn-tampered": "rejected",
}


def _note(message: str) -> None:
    echo(message, sys.stderr)


def _pull_approved(dest_root: Path, version: str) -> bool:
    """As a consumer would: pull the approved model back from the registry, verified end to end."""
    from modelgate.registry import RegistryConfig, pull
    from modelgate.registry.config import registry_configured
    from modelgate.services import s3_identity

    if not registry_configured():
        _note("no registry configured: the approved model was not published (start `modelgate services up`)")
        return True
    access, secret = s3_identity("consumer")
    config = RegistryConfig.from_env().with_(access_key=access, secret_key=secret)
    dest = dest_root / f"digits-cnn-signed-{version}"
    model = pull("digits-cnn-signed", version, dest, config=config)
    _note(f"pulled digits-cnn-signed@{version} as the read-only consumer, verified ({model.root_digest}) -> {dest}")
    return True


def run_demo(*, seed: int = 0, live: bool | None = None) -> int:
    """Build, take in, print a decision table; returns 0 when every example got its expected decision."""
    from flows.cli_intake import run_intake
    from modelgate.demo.build import PLAIN, build_examples
    from modelgate.manifest import build_manifest
    from modelgate.request import IntakeRequest

    settings = load_settings()
    out = settings.home / "examples"
    _note(f"building the example models in {out} ...")
    built = build_examples(out, seed=seed, overwrite=True)
    live = sys.stderr.isatty() if live is None else live
    # Registry versions are write-once: every demo run takes its models in as a new version.
    version = "1.0.0-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    reference_digest = build_manifest(built[PLAIN]).root_digest
    rows = []
    for name, expected in EXPECTED.items():
        _note(f"── {name} " + "─" * max(0, 60 - len(name)))
        request = IntakeRequest(source=str(built[name]), name=name, version=version, eval_data=EVAL_DATA)
        if name == REFERENCE_FOR:
            # The organization's trusted base release: the privacy audit and forensics compare with it.
            request = request.model_copy(update={"reference": str(built[PLAIN]), "reference_digest": reference_digest})
        outcome = run_intake(request, live=live)
        rows.append((name, expected, outcome))
    ok = all(outcome.decision == expected for _, expected, outcome in rows)
    cells = [[n, o.decision, e, "\n".join([*o.reasons, *o.findings]) or "-"] for n, e, o in rows]
    colour = {"approved": "green", "rejected": "red"}
    styles = [[None, colour.get(o.decision, "yellow"), None, None] for _, _, o in rows]
    title = "modelgate demo: intake decisions"
    echo(table(("model", "decision", "expected", "reasons"), cells, title=title, styles=styles, wrap={"reasons": 90}))
    ok &= _pull_approved(settings.home / "pulled", version)
    from modelgate.services import client_env

    api = client_env(settings).get("PREFECT_API_URL")
    if api:
        ui = styled(api.removesuffix("/api"), "bold", sys.stderr)
        _note(f"Prefect UI: {ui}  (runs and decision reports are there)")
    _note(f"Evidence: {settings.evidence_dir}   Stop the services: make services-down")
    return 0 if ok else 1
