"""The admin page in a real browser: sign in, live plots that move with traffic, actions."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from msgspec import Raw
from playwright.async_api import Page, expect

from hubbub.core.auth import mint_token
from hubbub.errors import DisconnectCode
from tests.conftest import OpenRaw, StartServer
from tests.helpers import SECRET

ADMIN_KEY = "admin-" + "k" * 40
ZERO = re.compile(r"^0(\.0+)?$")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def test_admin_page_signs_in_and_plots_live_traffic(
    start_server: StartServer, open_raw: OpenRaw, page: Page
) -> None:
    server = await start_server(token_secret=SECRET, admin_key=ADMIN_KEY, admin_interval=0.2)
    assert server.hub is not None
    watcher = await open_raw(server, connect=False)
    await watcher.ok("connect", {"token": mint_token(SECRET, "watcher")})
    await watcher.ok("subscribe", {"channel": "news"})

    await page.goto(f"{server.api_url}/admin")
    await page.fill("#key", "wrong-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_contain_text("admin key")
    await page.fill("#key", ADMIN_KEY)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#connections")).to_have_text("1")
    before = await page.locator("#plot-messages").evaluate("canvas => canvas.toDataURL()")

    async def traffic() -> None:
        for i in range(400):  # about 2 seconds of traffic
            await server.hub.publish("news", Raw(b"%d" % i))  # type: ignore[union-attr]
            if i % 20 == 0:
                await asyncio.sleep(0.1)  # pacing the feed, not synchronisation

    publisher = asyncio.create_task(traffic())
    # Locator assertions poll without eval, which the page's CSP (rightly) forbids.
    await expect(page.locator("#rate-in")).not_to_have_text(ZERO, timeout=10_000)
    await expect(page.locator("#plot-messages")).not_to_have_attribute("data-last", ZERO, timeout=10_000)
    after = await page.locator("#plot-messages").evaluate("canvas => canvas.toDataURL()")
    assert after != before, "the plot did not move"
    await expect(page.locator("#top-channels")).to_contain_text("news")
    await publisher
    if os.environ.get("HUBBUB_UPDATE_SCREENSHOTS") == "1":  # refreshes the picture in docs/
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "admin.png"), full_page=True)

    # Actions: publish to a channel, then disconnect a user.
    await page.fill("#publish-channel", "news")
    await page.fill("#publish-data", '{"from": "admin"}')
    await page.get_by_role("button", name="Publish").click()
    await expect(page.locator("#publish-result")).to_contain_text("done")
    async with asyncio.timeout(10):
        while (await watcher.next_publication())["data"] != {"from": "admin"}:
            pass
    await page.fill("#disconnect-user", "watcher")
    await page.get_by_role("button", name="Disconnect user").click()
    await expect(page.locator("#disconnect-result")).to_have_text("done: 1 connection closed")
    assert await watcher.close_code() == DisconnectCode.FORCE_DISCONNECT
    await expect(page.locator("#connections")).to_have_text("0")
    # Nobody by that name: said so, not "done: {}".
    await page.get_by_role("button", name="Disconnect user").click()
    await expect(page.locator("#disconnect-result")).to_have_text("no connections for that user")


async def test_admin_feed_refuses_a_wrong_key_over_websocket(start_server: StartServer) -> None:
    import aiohttp

    server = await start_server(admin_key=ADMIN_KEY)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.api_url}/admin/ws") as socket:
        await socket.send_json({"key": "nope"})
        reply = await socket.receive_json(timeout=5)
        assert "error" in reply
        closing = await socket.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
