"""The chat in real browsers: two users, rooms, DMs, typing, history, a server restart, XSS."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from hubbub.config import Settings
from tests.conftest import StartServer
from tests.e2e.conftest import Users
from tests.helpers import SECRET

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chat_settings(tmp_path: Path) -> dict[str, Any]:
    """The embedded namespaces (what /chat uses), dev sign-in, and a fixed secret and file so a
    restarted server accepts the same tokens and keeps the history."""
    return {
        "dev": True,
        "token_secret": SECRET,
        "namespaces": Settings().namespaces,
        "history_path": str(tmp_path / "chat.db"),
    }


async def say(page: Page, text: str) -> None:
    await page.fill("#message", text)
    await page.get_by_role("button", name="Send").click()


def message(page: Page, text: str) -> Any:
    return page.locator("#messages li", has_text=text)


async def shoot(page: Page, name: str) -> None:
    if os.environ.get("HUBBUB_UPDATE_SCREENSHOTS") == "1":  # refreshes the pictures in docs/
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / name))


async def test_room_messages_dms_typing_and_history(start_server: StartServer, tmp_path: Path, users: Users) -> None:
    server = await start_server(**chat_settings(tmp_path))
    alice = await users.sign_in(server, "alice")
    bob = await users.sign_in(server, "bob")
    await expect(alice.locator("#online")).to_contain_text("bob")  # presence

    await say(alice, "hello bob")
    await expect(message(bob, "hello bob")).to_have_count(1)

    # typing: shows in the other browser, and clears when typing stops
    await alice.locator("#message").press_sequentially("wri")
    await expect(bob.locator("#typing")).to_have_text("alice is typing…")
    await expect(bob.locator("#typing")).to_have_text("", timeout=8000)

    # a direct message raises the unread badge of a conversation not in view
    await alice.fill("#dm-user", "bob")
    await alice.get_by_role("button", name="Message").click()
    await expect(alice.locator("#title")).to_have_text("bob")
    await say(alice, "psst, just you")
    dm_button = bob.locator("#dms button", has_text="alice")
    await expect(dm_button.locator(".badge")).to_have_text("1")
    await shoot(bob, "chat-unread.png")
    await dm_button.click()
    await expect(message(bob, "psst, just you")).to_have_count(1)
    await expect(dm_button.locator(".badge")).to_have_count(0)
    # typing in a direct message goes to dm-typing:alice,bob, which only the two of them may read
    await alice.locator("#message").press_sequentially("ok")
    await expect(bob.locator("#typing")).to_have_text("alice is typing…")

    # history survives a reload
    await bob.reload()
    await expect(bob.locator("#title")).to_have_text("#lobby")
    await expect(message(bob, "hello bob")).to_have_count(1)
    await shoot(alice, "chat.png")


async def test_user_text_is_shown_as_text(start_server: StartServer, tmp_path: Path, users: Users) -> None:
    server = await start_server(**chat_settings(tmp_path))
    alice = await users.sign_in(server, "alice")
    bob = await users.sign_in(server, "bob")
    attack = "<img src=x onerror=alert(1)>"
    await say(alice, attack)
    await expect(message(bob, attack)).to_have_count(1)
    await expect(bob.locator("#messages img")).to_have_count(0)
    assert await message(bob, attack).locator(".text").text_content() == attack


async def test_restart_recovers_what_was_published_meanwhile_once(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """The server restarts; messages published through the HTTP API before the browsers are back
    appear in both, once each, and the page shows that it was reconnecting."""
    settings = chat_settings(tmp_path)
    first = await start_server(**settings)
    alice = await users.sign_in(first, "alice")
    bob = await users.sign_in(first, "bob")
    await say(alice, "before the restart")
    await expect(message(bob, "before the restart")).to_have_count(1)
    port, api_port = first.port, first.api_port
    await first.close()
    await expect(alice.locator("#banner")).to_be_visible()
    await expect(alice.locator("#banner")).to_have_text(re.compile("Reconnecting"))
    second = await start_server(**settings, port=port, api_port=api_port)
    async with aiohttp.ClientSession() as http:
        for n in (1, 2, 3):
            body = {"channel": "room:lobby", "data": {"text": f"during the outage {n}"}}
            async with http.post(f"{second.api_url}/api/publish", json=body) as response:
                assert response.status == 200
    for page in (alice, bob):
        for n in (1, 2, 3):
            await expect(message(page, f"during the outage {n}")).to_have_count(1, timeout=15_000)
        await expect(message(page, "before the restart")).to_have_count(1)
        await expect(page.locator("#banner")).to_be_hidden()
    await say(bob, "after the restart")
    await expect(message(alice, "after the restart")).to_have_count(1)
