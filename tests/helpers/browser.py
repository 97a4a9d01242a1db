"""Headless Chromium for the UI tests: find it, drive Prefect's UI with text selectors, keep evidence on failure.

Prefect's UI is a single-page app: every step waits explicitly (bounded) for the text a person
would look for, never for a fixed time. ``make browser-deps`` installs Debian's ``chromium`` and
``chromium-driver``; without them the test fails in CI (``CI=true``) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
INSTALL_HINT = "install it with `make browser-deps` (apt-get install chromium chromium-driver, as root)"


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) executables, from CHROMIUM_PATH / CHROMEDRIVER_PATH or the PATH."""
    browser = next(filter(None, map(shutil.which, (os.environ.get("CHROMIUM_PATH", ""), *BROWSERS))), None)
    driver = next(filter(None, map(shutil.which, (os.environ.get("CHROMEDRIVER_PATH", ""), *DRIVERS))), None)
    return (browser, driver) if browser and driver else None


def require_chromium() -> tuple[str, str]:
    """The executables, or fail (in CI) / skip (elsewhere) with the reason and the fix."""
    found = find_chromium()
    try:
        import selenium  # noqa: F401
    except ImportError:
        found, reason = None, "the selenium package is not installed (pip install -c constraints.txt -e '.[dev]')"
    else:
        reason = f"headless Chromium and chromedriver not found; {INSTALL_HINT}"
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


class Page:
    """A thin layer over one WebDriver: waits for text, clicks by text, types into Prefect's schema form."""

    def __init__(self, driver: object, timeout_s: float = 30.0) -> None:
        from selenium.webdriver.remote.webdriver import WebDriver

        assert isinstance(driver, WebDriver)
        self.driver = driver
        self.timeout_s = timeout_s

    def wait(self, xpath: str, timeout_s: float | None = None, what: str | None = None):  # noqa: ANN201
        """The first visible element matching ``xpath``; a one-line TimeoutException naming ``what`` if none."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout_s or self.timeout_s, poll_frequency=0.25).until(
                ec.visibility_of_element_located(("xpath", xpath))
            )
        except TimeoutException as exc:
            raise TimeoutException(f"not shown within {timeout_s or self.timeout_s:.0f} s: {what or xpath}") from exc

    def click(self, xpath: str, what: str | None = None, timeout_s: float | None = None) -> None:
        """Click the element; the SPA re-renders under the pointer, so a stale or covered element is found again."""
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            ElementNotInteractableException,
            StaleElementReferenceException,
            TimeoutException,
        )

        limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit
        while True:
            element = self.wait(xpath, max(0.5, deadline - time.monotonic()), what)
            try:
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
                element.click()
                return
            except (StaleElementReferenceException, ElementClickInterceptedException, ElementNotInteractableException):
                if time.monotonic() > deadline:
                    raise TimeoutException(f"could not click within {limit:.0f} s: {what or xpath}") from None
                time.sleep(0.25)

    def click_text(self, text: str, tag: str = "*", timeout_s: float | None = None) -> None:
        """Click the last visible ``tag`` whose own text is ``text`` (menus open on top of the page)."""
        self.click(f"(//{tag}[normalize-space()={literal(text)}])[last()]", f"{tag} {text!r}", timeout_s)

    def form_property(self, label: str):  # noqa: ANN201
        """A field of Prefect's generated parameter form, by its label (the field's title)."""
        return self.wait(
            "//div[contains(@class,'schema-form-property')][./div[contains(@class,'p-label__header')]"
            f"//span[contains(@class,'schema-form-property__label')][normalize-space()={literal(label)}]]",
            what=f"form field {label!r}",
        )

    def type_into(self, label: str, text: str) -> None:
        """Replace the value of a text field with keystrokes, as a person would (the form sees each input)."""
        from selenium.webdriver.common.keys import Keys

        field = self.form_property(label).find_element("xpath", ".//textarea | .//input[not(@type='checkbox')]")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        field.send_keys(text)

    def choose_none(self, label: str) -> None:
        """Set an optional field to None with its str/None switch."""
        button = self.form_property(label).find_element("xpath", ".//button[normalize-space()='None']")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
        button.click()

    def scroll_to(self, xpath: str) -> None:
        """Bring an element to the top of its scrolling container (the UI scrolls a panel, not the window)."""
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", self.wait(xpath))

    def text(self) -> str:
        return str(self.driver.find_element("tag name", "body").text)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


def literal(text: str) -> str:
    """An XPath string literal for any text (XPath 1.0 has no escapes)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{p}'" for p in parts) + ")"


@contextmanager
def chromium(browser: str, driver: str, failure_dir: Path, size: tuple[int, int] = (1400, 1000)) -> Iterator[Page]:
    """A headless Chromium page; on an exception, its screenshot and page source land in ``failure_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(arg)
    web = webdriver.Chrome(service=Service(driver), options=options)
    web.set_page_load_timeout(60)
    page = Page(web)
    try:
        yield page
    except BaseException:
        failure_dir.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(failure_dir / "failure.png")
            (failure_dir / "failure.html").write_text(web.page_source)
            print(f"browser state at the failure: {failure_dir}/failure.png and failure.html ({web.current_url})")
        except Exception as exc:  # noqa: BLE001 - the original failure matters more
            print(f"could not save the browser state: {exc}")
        raise
    finally:
        web.quit()
