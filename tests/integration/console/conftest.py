"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) for the console tests.

The browser is the system one (``make test`` installs it with apt-get when missing; see the
Makefile's ``browser`` target): Playwright's own browser download is never used. Pages run
offline: every request to a host other than the test server's is aborted and recorded, so
a page that needed the internet fails its test.

Screenshots go to ``build/console/`` (a test artifact, ignored by git); with
``FERRY_CONSOLE_SCREENSHOTS=docs`` they are also written to ``docs/images/`` for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from extras import strict

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "build" / "console"
DOCS_IMAGES = ROOT / "docs" / "images"

#: Where Debian puts its browser; FERRY_CHROMIUM names another binary.
CHROMIUM = os.environ.get("FERRY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return (f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package "
                "(make test does: the Makefile's 'browser' target)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -c requirements/constraints.txt -e '.[all,dev]'"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module (a missing browser fails a strict run).

    Per module, not per session: Playwright's sync API runs its own asyncio event loop in
    the main thread for as long as ``sync_playwright()`` is open, and every asyncio test
    that ran after the console's (engine, deadlines, pipelines...) failed with "cannot be
    called from a running event loop" while a session-wide browser kept it open.
    """
    missing = _browser_missing()
    if missing:
        if strict():
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=[*args, "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """A page of its own context, offline but for the test server."""

    page: object
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str, *, full_page: bool = True, docs: bool = False) -> Path:
        """Save a screenshot of the page as a test artifact (``docs``: one the README shows)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        if docs and os.environ.get("FERRY_CONSOLE_SCREENSHOTS") == "docs":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMAGES / path.name)
        return path


@pytest.fixture
def open_tab(browser):
    """``open_tab(base_url, width=1280, height=800)``: a fresh offline tab on the server."""
    contexts = []

    def make(base_url: str, width: int = 1280, height: int = 800) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height},
                                      base_url=base_url)
        contexts.append(context)
        tab = Tab(context.new_page())

        def only_local(route):
            if route.request.url.startswith(base_url):
                route.continue_()
            else:
                tab.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        tab.page.set_default_timeout(30_000)
        return tab

    yield make
    for context in contexts:
        context.close()
