"""Every page at phone width (390 x 844): nothing scrolls sideways, nothing is out of reach, labels
stay readable, and no page logs a console error or throws (issue 14)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from hubbub.config import Settings
from hubbub.demo import run_ticker
from tests.conftest import StartServer
from tests.e2e.test_chat import chat_settings, message, say
from tests.helpers import SECRET

PHONE: ViewportSize = {"width": 390, "height": 844}


class Watched:
    """A phone-sized page whose console errors and uncaught errors are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda entry: self.problems.append(entry.text) if entry.type == "error" else None)
        page.on("pageerror", lambda error: self.problems.append(str(error)))


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2)
    watched = Watched(await context.new_page())
    yield watched
    await context.close()
    assert watched.problems == [], watched.problems


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"


async def test_chat_on_a_phone(start_server: StartServer, tmp_path: Path, phone: Watched, browser: Browser) -> None:
    """The list folds behind "Chats", whose badge shows what is unread; the newest message sits
    above the composer."""
    server = await start_server(**chat_settings(tmp_path))
    page = phone.page
    await page.goto(f"http://127.0.0.1:{server.port}/chat")
    await page.fill("#name", "alice")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#title")).to_have_text("#lobby")
    await expect(page.locator("#conversations")).to_be_hidden()
    toggle = page.get_by_role("button", name=re.compile("^Chats"))
    await expect(toggle).to_be_visible()
    for n in range(30):
        await say(page, f"line {n}")
    newest = message(page, "line 29")
    await expect(newest).to_have_count(1)
    await expect(page.locator("#messages li.pending")).to_have_count(0)  # all confirmed
    box, composer = await newest.bounding_box(), await page.locator("#message-form").bounding_box()
    assert box is not None and composer is not None
    assert box["y"] + box["height"] <= composer["y"] + 1 and composer["y"] + composer["height"] <= PHONE["height"] + 1
    await no_sideways_scroll(page)
    # A DM from bob: visible on the folded list's toggle, then in the list.
    bob_context = await browser.new_context()
    bob = await bob_context.new_page()
    await bob.goto(f"http://127.0.0.1:{server.port}/chat")
    await bob.fill("#name", "bob")
    await bob.get_by_role("button", name="Sign in").click()
    # Bob starts the DM once his set-up has opened #lobby, as a person would. Filled in during the
    # set-up on a loaded machine, the box was sometimes found empty at the click (about 1 run in
    # 5 with both cores busy; not understood yet, noted for the chat page).
    await expect(bob.locator("#title")).to_have_text("#lobby")
    await bob.fill("#dm-user", "alice")
    await bob.get_by_role("button", name="Message", exact=True).click()
    await expect(bob.locator("#title")).to_have_text("alice")  # the DM is open: "psst" goes there, not to #lobby
    await say(bob, "psst")
    await expect(page.locator("#unread-total")).to_have_text("1")
    await toggle.click()
    await expect(page.locator("#conversations")).to_be_visible()
    await page.locator("#dms button", has_text="bob").click()
    await expect(message(page, "psst")).to_have_count(1)
    await expect(page.locator("#conversations")).to_be_hidden()
    await expect(page.locator("#unread-total")).to_be_hidden()
    await bob_context.close()


async def test_ticker_on_a_phone(start_server: StartServer, phone: Watched) -> None:
    """ "Waiting for data" before the feed; the chart drawn at its shown size (12 px labels)."""
    server = await start_server(namespaces=Settings().namespaces, history_path=None)
    page = phone.page
    await page.goto(f"http://127.0.0.1:{server.port}/ticker")
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#prices")).to_contain_text("Waiting for data")
    feed = asyncio.create_task(run_ticker(server.api_url, symbols=5, rate=100, duration=30, report=False))
    try:
        await expect(page.locator("#prices tr")).to_have_count(5)
        await expect(page.locator("#prices")).not_to_contain_text("Waiting for data")
        await expect(page.locator("#chart")).to_have_attribute("data-points", re.compile(r"^([2-9]|\d\d+)$"))
        sizes = await page.locator("#chart").evaluate("c => [c.width, Math.round(c.clientWidth * devicePixelRatio)]")
        assert sizes[0] == sizes[1]  # no 900 px drawing squeezed into 360 px
        await no_sideways_scroll(page)
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)


async def test_admin_on_a_phone(start_server: StartServer, phone: Watched) -> None:
    server = await start_server(token_secret=SECRET, admin_key="admin-" + "k" * 40, admin_interval=0.2)
    page = phone.page
    await page.goto(f"{server.api_url}/admin")
    await page.fill("#key", "admin-" + "k" * 40)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#status")).to_have_text("live")
    await expect(page.locator(".legend").first).to_contain_text("messages in")
    await expect(page.locator(".legend").first).to_contain_text("deliveries")
    await expect(page.locator(".legend").nth(1)).to_contain_text("connections")
    await no_sideways_scroll(page)
