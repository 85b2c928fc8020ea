"""A real browser: Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from hubbub.server import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PRESENT = os.path.exists(CHROMIUM)
# As the machine's probe found: no sandbox as root, and no background traffic off loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await context.close()
    assert not errors, f"the page raised: {errors}"


def page_error(entry: ConsoleMessage) -> bool:
    """A console error of the page's own. Chromium also logs each refused connection while a test
    has the server down on purpose: those are the browser's reports, not the page's errors."""
    return entry.type == "error" and "net::ERR_CONNECTION_REFUSED" not in entry.text


class Users:
    """One browser context (own storage) per user; page errors and console errors fail the test."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    async def sign_in(self, server: Server, name: str) -> Page:
        context = await self.browser.new_context()
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.on("console", lambda entry: self.errors.append(f"{name}: {entry.text}") if page_error(entry) else None)
        page.on("dialog", lambda dialog: self.dialogs.append(dialog.message))
        await page.goto(f"http://127.0.0.1:{server.port}/chat")
        await page.fill("#name", name)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#title")).to_have_text("#lobby")
        await expect(page.locator("#state")).to_have_text("connected")
        return page


@pytest.fixture
async def users(browser: Browser) -> AsyncIterator[Users]:
    users = Users(browser)
    yield users
    assert not users.errors, users.errors
    assert not users.dialogs, f"a dialog opened: {users.dialogs}"
