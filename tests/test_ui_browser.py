"""The Prefect UI as the front door: a person starts an intake from the form and reads the decision.

Headless Chromium opens the local Prefect UI, finds the ``intake`` deployment, starts a custom run
with parameters typed into the generated form, waits for the run to finish and opens its report
artifact. The screenshots land in the test's tmp folder; ``make screenshots`` (which sets
``REFRESH_SCREENSHOTS=1``) also copies them over the README's (``docs/images/``): a plain test run
writes no tracked file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import chromium, literal, require_chromium
from tests.helpers.marks import starts_server
from tests.helpers.paths import REPO
from tests.helpers.ports import free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]

IMAGES = REPO / "docs" / "images"
RUN_TIMEOUT_S = 240  # fetch → gate on CPU without evaluations takes well under a minute; bounded anyway


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """Chromium and chromedriver, before anything is started (fails in CI, skips elsewhere, when missing)."""
    return require_chromium()


@pytest.fixture(scope="module")
@starts_server
def served(browser: tuple[str, str], prefect_server: str) -> Iterator[str]:
    """`modelgate serve --background` against the session's Prefect server; stopped like `services down` does."""
    from modelgate import services

    os.environ["MODELGATE_SERVE_PORT"] = str(free_port())
    done = subprocess.run(
        [str(Path(sys.executable).parent / "modelgate"), "serve", "--background"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
    )
    assert done.returncode == 0, done.stderr
    ui = prefect_server.removesuffix("/api")
    assert f"Prefect UI: {ui}" in done.stderr, done.stderr
    try:
        yield ui
    finally:
        assert services.stop("serve") is True, "the serve process must be recorded and stoppable"
        os.environ.pop("MODELGATE_SERVE_PORT", None)
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("gpu")  # serve set it; other tests evaluate on this server


def _wait_for_final_state(run_id: str, timeout_s: float) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return str(state.name)
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish within {timeout_s:.0f} s")


def test_intake_started_from_the_ui_form_shows_its_decision(
    browser: tuple[str, str], served: str, examples: dict[str, Path], tmp_path: Path
) -> None:
    source = str(examples["digits-cnn-signed"])
    version = "1.0.0-ui" + time.strftime("%H%M%S")
    with chromium(*browser, failure_dir=tmp_path) as page:
        page.driver.get(f"{served}/deployments")
        page.click("//a[contains(@href,'/deployments/deployment/')][normalize-space()='intake']", "intake deployment")
        page.click_text("Run", "button")
        page.click_text("Custom run")
        page.type_into("Source", source)
        page.type_into("Name", "ui-intake")
        page.type_into("Version", version)
        page.choose_none("Eval Data (Optional)")  # evaluations take minutes on CPU: the form can skip them
        page.scroll_to("//*[normalize-space()='Run Name']")
        page.screenshot(tmp_path / "ui-intake-form.png")
        run_name = page.wait("//div[contains(@class,'flow-run-name-input')]//input", what="Run Name").get_property(
            "value"
        )
        page.click_text("Submit", "button")
        # The new run, in the deployment's list of runs; once started, the flow names it <name>-<version>.
        names = f"normalize-space()={literal(str(run_name))} or normalize-space()={literal('ui-intake-' + version)}"
        page.click(f"//a[contains(@href,'/runs/flow-run/')][{names}]", "the new run", timeout_s=60)
        page.wait("//*[contains(@class,'p-tab')][normalize-space()='Artifacts']", what="the flow run page")
        match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", page.driver.current_url)
        assert match, page.driver.current_url
        final = _wait_for_final_state(match.group(1), RUN_TIMEOUT_S)
        assert final == "Completed", f"the run ended {final}"

        page.driver.refresh()  # the run page as a person finds it once the run is done
        page.click("//*[contains(@class,'p-tab')][normalize-space()='Artifacts']", "the Artifacts tab")
        page.click("//*[normalize-space()='intake-ui-intake']", "the report artifact card")
        page.wait("//h1[contains(., 'APPROVED')]", what="the decision in the report")
        text = page.text()
        assert f"ui-intake {version}" in text
        for heading in ("Rules", "Stages", "Links"):
            assert heading in text, heading
        assert "signature-verified" in text and "evidence folder" in text
        page.screenshot(tmp_path / "ui-intake-run.png")

    _check_run_parameters(match.group(1), source, version)
    print(f"screenshots: {tmp_path}")
    if os.environ.get("REFRESH_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name in ("ui-intake-form.png", "ui-intake-run.png"):
            (IMAGES / name).write_bytes((tmp_path / name).read_bytes())
        print(f"README screenshots refreshed in {IMAGES}")


def _check_run_parameters(run_id: str, source: str, version: str) -> None:
    """What the form sent is what the flow ran with: typed values, None for the skipped evaluation data."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        request = client.read_flow_run(run_id).parameters["request"]
    assert (request["source"], request["name"], request["version"]) == (source, "ui-intake", version)
    assert request["eval_data"] is None
    assert request["model_task"] == "image-classification"
