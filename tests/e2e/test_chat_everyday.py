"""The chat as people use it every day (issue 14): failures shown where they happen, nothing typed
lost, history reachable in any window."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from hubbub.errors import DisconnectCode
from tests.conftest import StartServer
from tests.e2e.conftest import Users
from tests.e2e.test_chat import chat_settings, message, say


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda entry: errors.append(entry.text) if entry.type == "error" else None)
    return errors


async def test_names_with_spaces_are_refused_with_a_reason_before_anything_is_sent(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """Sign-in, a new room and a new DM with "carol smith"-like names: a reason beside the form,
    no request, no dead room in the list, the typed text kept; and no console error (the pattern
    attributes compile under Chromium's v flag)."""
    server = await start_server(**chat_settings(tmp_path))
    context = await users.browser.new_context()
    page = await context.new_page()
    errors = console_errors(page)
    token_requests: list[str] = []
    page.on("request", lambda request: token_requests.append(request.url) if "/dev/token" in request.url else None)
    await page.goto(f"http://127.0.0.1:{server.port}/chat")
    for name in ("carol smith", "zoë"):
        await page.fill("#name", name)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-error")).to_have_text(re.compile("no spaces"))
    assert token_requests == [] and errors == []

    alice = await users.sign_in(server, "alice")
    alice_errors = console_errors(alice)
    await alice.fill("#room-name", "my room")
    await alice.get_by_role("button", name="Create").click()
    await expect(alice.locator("#room-error")).to_have_text(re.compile("Room names use"))
    await expect(alice.locator("#room-name")).to_have_value("my room")
    await expect(alice.locator("#rooms button", has_text="my room")).to_have_count(0)
    await expect(alice.locator("#title")).to_have_text("#lobby")
    await alice.fill("#dm-user", "nobody here")
    await alice.get_by_role("button", name="Message").click()
    await expect(alice.locator("#dm-error")).to_have_text(re.compile("User names use"))
    await alice.fill("#room-name", "my-room")  # a valid name works, and clears the message
    await alice.get_by_role("button", name="Create").click()
    await expect(alice.locator("#title")).to_have_text("#my-room")
    await expect(alice.locator("#room-error")).to_have_text("")
    assert alice_errors == []


async def test_a_user_the_server_disconnects_sees_why_and_cannot_type(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    server = await start_server(**chat_settings(tmp_path))
    assert server.hub is not None
    alice = await users.sign_in(server, "alice")
    await server.hub.disconnect_user("alice", DisconnectCode.FORCE_DISCONNECT, "removed by an admin")
    await expect(alice.locator("#ended")).to_be_visible()
    await expect(alice.locator("#ended")).to_have_text(re.compile("Disconnected by the server: removed by an admin"))
    await expect(alice.locator("#message")).to_be_disabled()
    await expect(alice.get_by_role("button", name="Send")).to_be_disabled()
    await expect(alice.locator("#banner")).to_be_hidden()


async def test_a_message_typed_while_the_server_is_away_is_pending_then_sent_once(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    settings = chat_settings(tmp_path)
    first = await start_server(**settings)
    alice = await users.sign_in(first, "alice")
    bob = await users.sign_in(first, "bob")
    await alice.fill("#room-name", "side")  # a second room, joined while online
    await alice.get_by_role("button", name="Create").click()
    await expect(alice.locator("#title")).to_have_text("#side")
    await alice.locator("#rooms button", has_text="#lobby").click()
    await expect(alice.locator("#title")).to_have_text("#lobby")
    port, api_port = first.port, first.api_port
    await first.close()
    await expect(alice.locator("#banner")).to_be_visible()
    await say(alice, "typed while offline")
    pending = alice.locator("#messages li.pending", has_text="typed while offline")
    await expect(pending).to_have_count(1)  # shown as sending, not lost
    await expect(alice.locator("#message")).to_have_value("")
    await alice.locator("#rooms button", has_text="#side").click()  # away from the room and back:
    await expect(alice.locator("#title")).to_have_text("#side")
    await alice.locator("#rooms button", has_text="#lobby").click()
    await expect(alice.locator("#title")).to_have_text("#lobby")
    await expect(pending).to_have_count(1)  # still there, still sending
    await start_server(**settings, port=port, api_port=api_port)
    for page in (alice, bob):
        await expect(message(page, "typed while offline")).to_have_count(1, timeout=15_000)
    await expect(pending).to_have_count(0)
    await alice.reload()  # and history holds it once too
    await expect(message(alice, "typed while offline")).to_have_count(1)


async def test_every_page_answers_its_favicon(start_server: StartServer, tmp_path: Path) -> None:
    """Browsers fetch /favicon.ico on every page: the public and the internal port answer it."""
    import aiohttp

    server = await start_server(**chat_settings(tmp_path))
    async with aiohttp.ClientSession() as http:
        for base in (f"http://127.0.0.1:{server.port}", server.api_url):
            async with http.get(f"{base}/favicon.ico") as response:
                assert response.status == 200 and response.content_type == "image/svg+xml"
                assert (await response.read()).startswith(b"<svg")


async def test_history_reaches_the_beginning_in_a_tall_window(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """A 2000 px window fits a page of history without a scrollbar: the chat loads older pages
    until the list scrolls, and "Load older messages" fetches the rest: no gap, no duplicate."""
    from msgspec import Raw

    server = await start_server(**chat_settings(tmp_path))
    assert server.hub is not None
    await server.hub.publish("rooms:index", Raw(b'{"room":"lobby"}'))
    for n in range(160):
        await server.hub.publish("room:lobby", Raw(b'{"text":"old %d"}' % n))
    context = await users.browser.new_context(viewport={"width": 1200, "height": 2000})
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/chat")
    await page.fill("#name", "alice")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#messages li")).not_to_have_count(50)  # more than the first page
    # it loads until the list scrolls (or the room's beginning is on screen)
    await page.wait_for_function(
        "() => { const l = document.getElementById('messages'); return l.scrollHeight > l.clientHeight; }"
    )
    older = page.get_by_role("button", name="Load older messages")
    for _ in range(10):  # a page (50) per click: bounded
        if not await older.is_visible():
            break
        shown = await page.locator("#messages li").count()
        await older.click()
        await expect(page.locator("#messages li")).not_to_have_count(shown)
    await expect(page.locator("#messages li")).to_have_count(160)
    await expect(older).to_be_hidden()  # the beginning of the room
    texts = await page.locator("#messages li .text").all_text_contents()
    assert texts == [f"old {n}" for n in range(160)]


LOAD = "async () => { window.hubbub = await import('/hubbub.js'); return true; }"


async def test_clients_come_back_within_a_second_of_the_server(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """A backoff of ten minutes, yet back at once: the /health probe sees the server return; the
    browser's `online` event retries at once too (probe off for that client)."""
    settings = chat_settings(tmp_path)
    first = await start_server(**settings)
    context = await users.browser.new_context()
    page = await context.new_page()
    probes: list[str] = []
    page.on("request", lambda request: probes.append(request.url) if request.url.endswith("/health") else None)
    await page.goto(f"http://127.0.0.1:{first.port}/health")
    assert await page.evaluate(LOAD)
    await page.evaluate(
        """async (url) => {
            const slow = { minReconnectDelay: 60000, maxReconnectDelay: 60000 };
            window.states = { probing: [], online: [] };
            window.probing = new window.hubbub.Client(url, slow);
            window.online = new window.hubbub.Client(url, { ...slow, probeInterval: 0 });
            for (const name of ["probing", "online"]) {
                // Full jitter may draw a short delay; this test needs the backoff to be long for sure.
                window[name].reconnectDelay = () => 600000;
                window[name].addEventListener("state", (e) => window.states[name].push(e.detail.state));
                await window[name].connect();
            }
        }""",
        first.url,
    )
    port, api_port = first.port, first.api_port
    await first.close()
    await page.wait_for_function("window.probing.state === 'disconnected' && window.online.state === 'disconnected'")
    await start_server(**settings, port=port, api_port=api_port)
    await page.wait_for_function("window.probing.state === 'connected'", timeout=3000)  # not the minute
    assert probes  # it asked /health while away
    assert await page.evaluate("window.online.state") == "disconnected"  # no probe: still waiting
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await page.wait_for_function("window.online.state === 'connected'", timeout=3000)


async def test_the_reconnecting_banner_never_covers_the_header(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    settings = chat_settings(tmp_path)
    first = await start_server(**settings)
    alice = await users.sign_in(first, "alice")
    await first.close()
    await expect(alice.locator("#banner")).to_be_visible()
    banner = await alice.locator("#banner").bounding_box()
    for header in ("#title", "#me", "#state"):
        box = await alice.locator(header).bounding_box()
        assert banner is not None and box is not None
        assert box["y"] >= banner["y"] + banner["height"], f"{header} is under the banner"


async def test_messages_show_their_time_and_the_api_publishers_name(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    import aiohttp

    server = await start_server(**chat_settings(tmp_path))
    alice = await users.sign_in(server, "alice")
    await say(alice, "with a time")
    line = message(alice, "with a time")
    await expect(line.locator("time")).to_have_count(1)
    stamp = await line.locator("time").get_attribute("datetime")
    assert stamp is not None and re.match(r"^\d{4}-\d\d-\d\dT", stamp)
    body = {"channel": "room:lobby", "data": {"text": "invoice paid"}, "info": {"name": "Billing"}}
    async with aiohttp.ClientSession() as http, http.post(f"{server.api_url}/api/publish", json=body) as response:
        assert response.status == 200
    await expect(message(alice, "invoice paid").locator(".author")).to_have_text("Billing")
    async with aiohttp.ClientSession() as http:
        body = {"channel": "room:lobby", "data": {"text": "no name given"}}
        async with http.post(f"{server.api_url}/api/publish", json=body) as response:
            assert response.status == 200
    await expect(message(alice, "no name given").locator(".author")).to_have_text("server")


async def test_unread_badges_live_on_the_server_across_reloads_tabs_and_devices(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """A DM to alice: her badge survives a reload and shows on her second device; reading it on
    one clears it on the other; bob sees "seen" under his message once she has read it."""
    server = await start_server(**chat_settings(tmp_path))
    alice = await users.sign_in(server, "alice")
    bob = await users.sign_in(server, "bob")
    await bob.fill("#dm-user", "alice")
    await bob.get_by_role("button", name="Message").click()
    await expect(bob.locator("#title")).to_have_text("alice")
    await say(bob, "are you there?")
    badge = alice.locator("#dms button", has_text="bob").locator(".badge")
    await expect(badge).to_have_text("1")
    await expect(bob.locator("#seen")).to_have_text("")
    await alice.reload()
    await expect(alice.locator("#state")).to_have_text("connected")
    await expect(badge).to_have_text("1")  # kept by the server, not by the page
    phone = await users.sign_in(server, "alice")  # another device of the same user
    phone_badge = phone.locator("#dms button", has_text="bob").locator(".badge")
    await expect(phone_badge).to_have_text("1")
    await alice.locator("#dms button", has_text="bob").click()
    await expect(message(alice, "are you there?")).to_have_count(1)
    await expect(badge).to_have_count(0)
    await expect(phone_badge).to_have_count(0)  # read on one device: read on all
    await expect(bob.locator("#seen")).to_have_text("seen")


async def test_a_refused_message_shows_the_servers_reason_and_is_sent_once_allowed(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """Over the publish rate: the server's 111 message under the composer, the line stays pending,
    then goes out once the rate allows, once."""
    server = await start_server(**chat_settings(tmp_path), publish_rate=0.5, publish_burst=1)
    alice = await users.sign_in(server, "alice")
    await say(alice, "first")
    await say(alice, "second, too soon")
    await expect(alice.locator("#send-error")).to_have_text(re.compile(r"Not sent yet \(111: too many publications"))
    await expect(alice.locator("#messages li.pending", has_text="second, too soon")).to_have_count(1)
    await expect(message(alice, "second, too soon")).to_have_count(1)
    await expect(alice.locator("#messages li.pending")).to_have_count(0, timeout=10_000)  # sent at last
    await expect(message(alice, "second, too soon")).to_have_count(1)
    await expect(alice.locator("#send-error")).to_have_text("")


# Headless Chromium shows no notifications and no page is ever hidden: this init script records
# the titles the page asks for and lets the test say when the tab counts as hidden.
RECORD_NOTIFICATIONS = """
Object.defineProperty(document, "hidden", { get: () => window.__hidden === true });
window.__titles = [];
const Shown = window.Notification;
window.Notification = class extends Shown {
  constructor(title, options) { super(title, options); window.__titles.push(title); }
};
"""


async def test_a_dm_notification_is_titled_by_its_author(
    start_server: StartServer, tmp_path: Path, users: Users
) -> None:
    """Not "bob in bob": a DM's title is its author; a room's says which room."""
    server = await start_server(**chat_settings(tmp_path))
    context = await users.browser.new_context()
    await context.grant_permissions(["notifications"], origin=f"http://127.0.0.1:{server.port}")
    await context.add_init_script(RECORD_NOTIFICATIONS)
    alice = await context.new_page()
    await alice.goto(f"http://127.0.0.1:{server.port}/chat")
    await alice.fill("#name", "alice")
    await alice.get_by_role("button", name="Sign in").click()
    await expect(alice.locator("#state")).to_have_text("connected")
    await expect(alice.locator("#title")).to_have_text("#lobby")  # signed in and set up, as Users.sign_in
    await alice.fill("#room-name", "side")
    await alice.get_by_role("button", name="Create").click()
    await expect(alice.locator("#title")).to_have_text("#side")  # created (and announced) first
    await alice.locator("#rooms button", has_text="#lobby").click()
    await expect(alice.locator("#title")).to_have_text("#lobby")
    await alice.evaluate("window.__hidden = true")
    bob = await users.sign_in(server, "bob")
    await bob.fill("#dm-user", "alice")
    await bob.get_by_role("button", name="Message").click()
    await expect(bob.locator("#title")).to_have_text("alice")  # said in the DM, not in #lobby
    await say(bob, "a direct word")
    await bob.locator("#rooms button", has_text="#side").click()
    await expect(bob.locator("#title")).to_have_text("#side")
    await say(bob, "in the side room")
    await alice.wait_for_function("window.__titles.length === 2")
    assert await alice.evaluate("window.__titles") == ["bob", "bob in #side"]
    await context.close()
