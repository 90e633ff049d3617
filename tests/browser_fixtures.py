"""Playwright fixtures (imported by tests/conftest.py, so every test folder shares
one browser per session): Debian's chromium, headless, pages at 1366x768."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from django.test import Client

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

# Playwright's sync API runs an event loop in the test thread; the ORM calls the
# tests make between browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser(live_server):
    # Asks for the live server so that it stops *after* the browser closes. The live server's
    # request threads wait on chromium's keep-alive connections until the browser exits, then
    # close their database connection; on SQLite that is the in-memory one shared with the test
    # thread, which only a running live server may share, so a request thread still waiting when
    # the server stopped failed there ("DatabaseWrapper objects created in a thread can only be
    # used in that same thread", as PytestUnhandledThreadExceptionWarnings at the session's end).
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
    for thread in threading.enumerate():  # the request threads now finish: let them, before the server stops
        if thread.name.endswith("(process_request_thread)"):
            thread.join(timeout=10)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """screenshot("name") writes artifacts/screenshots/name.png (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def login(page, live_server):
    """Log in through the login page as `username` (password of tests.factories)."""

    def do(username: str, password: str = "pass-word-123") -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()

    return do


@pytest.fixture
def browser_page(browser, live_server):
    """A function that opens a fresh page logged in as a user: `browser_page(user)`."""
    contexts = []

    def open_as(user):
        client = Client()
        client.force_login(user)
        ctx = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=live_server.url)
        ctx.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        contexts.append(ctx)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield open_as
    for ctx in contexts:
        ctx.close()


def save_screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
