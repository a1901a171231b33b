"""Debian's chromium driven by Playwright, for the tests that look at pages as a person would.

The browser is the system package (`apt-get install chromium`), never a Playwright download:
CI machines have no route to the download servers, and the system build is what operators run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Request

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("SUBSYNC_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)


@dataclass
class PageWatch:
    """What a page did behind the scenes: console errors, uncaught exceptions, network requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)


def new_page(browser: Browser) -> tuple[Page, PageWatch]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch()
    watch.attach(page)
    return page, watch


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-artifacts/ (or SUBSYNC_TEST_ARTIFACTS), kept after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
