"""A real browser for the console's tests: Debian's chromium driven by its chromedriver.

Nothing is downloaded: the browser and driver come from apt (`.ci/run` installs
them). Without them these tests skip with the reason, unless
``NOCTURNUS_TEST_BROWSER=required`` (set by `.ci/run`) turns the skip into a failure.
Screenshots of every view go to a fresh temporary directory (or
``NOCTURNUS_CONSOLE_SHOTS``), named at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
DESKTOP = (1280, 800)
PHONE = (390, 844)
WAIT_S = 15

_shots: dict[str, Path] = {}


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return (
                f"{path} is not installed (apt-get install -y chromium chromium-driver)"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    chosen = os.environ.get("NOCTURNUS_CONSOLE_SHOTS")
    path = (
        Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="nocturnus-console-"))
    )
    path.mkdir(parents=True, exist_ok=True)
    _shots["dir"] = path
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "dir" in _shots:
        terminalreporter.write_line(f"console screenshots: {_shots['dir']}")


class Console:
    """The console open in a browser, with the few moves the tests make."""

    def __init__(self, driver: Any, shots: Path) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.shots = shots
        self.by = By
        # views re-render their tables: an element found a moment ago may be gone
        self.wait = WebDriverWait(
            driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)
        )
        self.viewport(*DESKTOP)

    def viewport(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 600,
            },
        )

    def open(self, url: str) -> None:
        """A clean tab: no key, no target left from an earlier test."""
        self.driver.get(url + "/console")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(url + "/console")

    def until(self, condition: Callable[[], Any], what: str) -> Any:
        try:
            return self.wait.until(lambda _: condition())
        except Exception as e:
            raise AssertionError(
                f"timed out waiting for {what}; page says:\n{self.text()}"
            ) from e

    def find(self, xpath: str) -> Any:
        return self.until(lambda: self._visible(xpath), xpath)

    def _visible(self, xpath: str) -> Any:
        for element in self.driver.find_elements(self.by.XPATH, xpath):
            if element.is_displayed():
                return element
        return None

    def text(self) -> str:
        return str(self.driver.find_element(self.by.TAG_NAME, "body").text)

    def see(self, text: str, where: str = "//main") -> Any:
        return self.find(
            f"{where}//*[contains(normalize-space(.), {xpath_literal(text)})]"
        )

    def form(self, name: str) -> str:
        n = xpath_literal(name)
        return f"//form[@aria-label={n} or .//h3[normalize-space()={n}]]"

    def field(self, form: str, label: str) -> Any:
        label_el = self.find(
            f"{self.form(form)}//label[normalize-space()={xpath_literal(label)}]"
        )
        return self.driver.find_element(self.by.ID, label_el.get_attribute("for"))

    def field_value(self, element_id: str) -> str:
        return str(
            self.driver.find_element(self.by.ID, element_id).get_attribute("value")
        )

    def fill(self, form: str, values: dict[str, str | bool]) -> None:
        """Type each value into the field labelled with its key (checkboxes: a bool)."""
        for label, value in values.items():
            element = self.field(form, label)
            if element.tag_name == "select":  # its options may still be loading
                self.choose(element, str(value))
            elif element.get_attribute("type") == "checkbox":
                if element.is_selected() != bool(value):
                    element.click()
            else:
                element.clear()
                element.send_keys(str(value))

    def choose(self, select: Any, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        option = f"option[value={xpath_literal(value)}]"
        self.until(lambda: select.find_elements(self.by.CSS_SELECTOR, option), option)
        Select(select).select_by_value(value)

    def press(self, label: str, within: str = "") -> None:
        self.find(f"{within}//button[normalize-space()={xpath_literal(label)}]").click()

    def submit(self, form: str, button: str) -> None:
        self.press(button, self.form(form))

    def go(self, view: str) -> None:
        link = f"//nav//a[normalize-space()={xpath_literal(view)}]"
        self.find(link).click()
        self.find(f"{link}[@aria-current='page']")  # set as the view is built

    def login(self, key: str) -> None:
        self.find("//input[@id='login-key']").send_keys(key)
        self.press("Sign in")
        self.find("//nav//a")

    def confirm(self, typed: str | None = None) -> None:
        if typed is not None:
            self.find("//dialog//input").send_keys(typed)
        self.find("//dialog//button[@value='ok']").click()
        self.until(
            lambda: not self.driver.find_element(self.by.ID, "confirm").is_displayed(),
            "the dialog to close",
        )

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def script_errors(self) -> list[str]:
        """Script errors the browser logged since the last call (refused requests, which
        the tests cause on purpose, are logged too but are not script errors)."""
        return [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
        ]


def xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{p}'" for p in parts) + ")"


@pytest.fixture(scope="module")
def console(shots_dir: Path) -> Iterator[Console]:
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("NOCTURNUS_TEST_BROWSER") == "required":
            pytest.fail(f"NOCTURNUS_TEST_BROWSER=required but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="nocturnus-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield Console(driver, shots_dir)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
