"""The /ticker dashboard in a real browser: its numbers change while the demo feed runs."""

from __future__ import annotations

import asyncio
import contextlib
import re

from playwright.async_api import Page, expect

from hubbub.config import Settings
from hubbub.demo import run_ticker
from tests.conftest import StartServer

ZERO_OR_DASH = re.compile("^(0|\u2013)$")  # the page shows an en dash before the first sample


async def test_dashboard_numbers_change_with_the_feed(start_server: StartServer, page: Page) -> None:
    server = await start_server(namespaces=Settings().namespaces, history_path=None)
    feed = asyncio.create_task(run_ticker(server.api_url, symbols=10, rate=200, duration=60, report=False))
    try:
        await page.goto(f"http://127.0.0.1:{server.port}/ticker")
        await expect(page.locator("#status")).to_have_text("connected")
        await expect(page.locator("#prices tr")).to_have_count(10)
        first_price = page.locator("#prices tr").first.locator(".price")
        await expect(first_price).not_to_have_text("")  # the snapshot arrives at once
        before = await first_price.text_content()
        await expect(first_price).not_to_have_text(before or "", timeout=10_000)  # and then it moves
        await expect(page.locator("#rate")).not_to_have_text(ZERO_OR_DASH, timeout=5_000)
        await expect(page.locator("#latency")).not_to_have_text(ZERO_OR_DASH, timeout=5_000)
        await expect(page.locator("#chart")).to_have_attribute("data-points", re.compile(r"^([3-9]|\d\d+)$"))
        await expect(page.locator("#scores li")).to_have_count(4)
        await page.locator("#prices tr").nth(3).click()
        symbol = await page.locator("#prices tr").nth(3).get_attribute("data-symbol")
        await expect(page.locator("#chart-title")).to_have_text(f"{symbol}: price")
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
