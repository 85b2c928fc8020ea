"""hubbub.js driven in a real browser page: send to a user, token refresh, backoff, state events."""

from __future__ import annotations

from msgspec import Raw
from playwright.async_api import Page

from hubbub.errors import DisconnectCode
from tests.conftest import StartServer
from tests.e2e.conftest import Users
from tests.e2e.test_chat import chat_settings, message

# The module under test is loaded into a page of the server's own origin without a CSP
# (/health), so the test can drive it with evaluate().
LOAD = "async () => { window.hubbub = await import('/hubbub.js'); return true; }"


async def test_send_refresh_and_state_events(start_server: StartServer, tmp_path: object, page: Page) -> None:
    server = await start_server(**chat_settings(tmp_path), refresh_before=1.5)  # type: ignore[arg-type]
    # alice's tokens live 3 s: the server pushes `refresh` 1.5 s before exp, and hubbub.js answers
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    assert await page.evaluate(LOAD)
    result = await page.evaluate(
        """async (url) => {
            const tokenCalls = { alice: 0 };
            const started = Date.now();
            let fourthCall;
            const refreshedThrice = new Promise((resolve) => { fourthCall = resolve; });
            const token = (user) => async () => {
                if (user === "alice" && ++tokenCalls.alice === 4) fourthCall();
                return (await (await fetch(`/dev/token?user=${user}&ttl=3`)).json()).token;
            };
            const states = [];
            const alice = new window.hubbub.Client(url, { token: token("alice") });
            alice.addEventListener("state", (event) => states.push(event.detail.state));
            const bob = new window.hubbub.Client(url, { token: token("bob") });
            const got = new Promise((resolve) => bob.addEventListener("message", (e) => resolve(e.detail)));
            await Promise.all([alice.connect(), bob.connect()]);
            await alice.send("bob", { text: "hi bob" });
            const received = await got;
            await refreshedThrice; // connect, then three refreshes the server asked for: past the first exp
            const waited = Date.now() - started;
            await alice.ping(); // still connected: each refresh was accepted
            const delays = Array.from({ length: 200 }, () => alice.reconnectDelay(3));
            alice.close();
            bob.close();
            return { received, tokenCalls: tokenCalls.alice, waited, states, maxDelay: Math.max(...delays),
                     minDelay: Math.min(...delays) };
        }""",
        server.url,
    )
    assert result["received"]["data"] == {"text": "hi bob"}
    assert result["received"]["info"]["user"] == "alice"
    assert result["tokenCalls"] >= 4  # connect, then a refresh each time the server asked
    assert result["waited"] > 3000  # so the connection outlived its first token (3 s)
    assert result["states"][:2] == ["connecting", "connected"] and result["states"][-1] == "closed"
    assert 0 <= result["minDelay"] < 400 and 1200 < result["maxDelay"] <= 1600  # full jitter up to 200 * 2^3


async def test_scrolling_up_loads_older_history_and_phone_width(
    start_server: StartServer, tmp_path: object, users: Users
) -> None:
    server = await start_server(**chat_settings(tmp_path))  # type: ignore[arg-type]
    assert server.hub is not None
    await server.hub.publish("rooms:index", Raw(b'{"room":"lobby"}'))
    for n in range(80):
        await server.hub.publish("room:lobby", Raw(b'{"text":"old %d"}' % n))
    alice = await users.sign_in(server, "alice")
    await alice.set_viewport_size({"width": 375, "height": 700})  # a phone
    await expect_count(alice, "#messages li", 50)
    await alice.locator("#message").scroll_into_view_if_needed()
    assert await alice.locator("#message").is_visible()
    await alice.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    await expect_count(alice, "#messages li", 80)
    await expect_count(alice, "#messages li >> text=old 0", 1)
    assert await message(alice, "old 79").count() == 1


async def expect_count(page: Page, selector: str, count: int) -> None:
    from playwright.async_api import expect

    await expect(page.locator(selector)).to_have_count(count)


async def test_browser_compression_both_ways_without_client_context(start_server: StartServer, page: Page) -> None:
    """Chromium accepts `client_no_context_takeover`, compresses its publish, and reads compressed pushes."""
    server = await start_server(compression=True, compression_threshold=0)
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    result = await page.evaluate(
        """async (url) => {
            const ws = new WebSocket(url, "hubbub.json.v1");
            const lines = [];
            const pushes = [];
            const done = new Promise((resolve, reject) => {
                ws.onerror = () => reject(new Error("websocket error"));
                ws.onmessage = (event) => {
                    for (const line of event.data.split("\\n")) {
                        const message = JSON.parse(line);
                        lines.push(message);
                        if (message.push) pushes.push(message.push.pub.data);
                        if (message.id === 2) {
                            for (let n = 0; n < 3; n++) {
                                ws.send(JSON.stringify({ id: 3 + n, publish: { channel: "zipped",
                                    data: { n, pad: "z".repeat(3000) } } }));
                            }
                        }
                        if (pushes.length === 3) resolve();
                    }
                };
            });
            await new Promise((resolve) => { ws.onopen = resolve; });
            ws.send('{"id":1,"connect":{}}\\n{"id":2,"subscribe":{"channel":"zipped"}}');
            await done;
            ws.close();
            return { extensions: ws.extensions, pushes: pushes.map((data) => [data.n, data.pad.length]) };
        }""",
        server.url,
    )
    assert "permessage-deflate" in result["extensions"] and "client_no_context_takeover" in result["extensions"]
    assert result["pushes"] == [[0, 3000], [1, 3000], [2, 3000]]


async def test_subscription_token_function_and_unicode_line_breaks_in_the_browser(
    start_server: StartServer, tmp_path: object, page: Page
) -> None:
    """hubbub.js answers sub_refresh pushes from its token function, and keeps U+2028, U+2029,
    U+0085 in data intact, live, sent and through recovery after the server cut it."""
    from hubbub.config import NamespaceOptions
    from hubbub.core.auth import mint_token
    from tests.helpers import SECRET

    namespaces = {"vip": NamespaceOptions(subscribe="token", publish="authenticated", history_size=50, history_ttl=60)}
    server = await start_server(token_secret=SECRET, namespaces=namespaces, refresh_before=1)
    assert server.hub is not None
    tokens = [mint_token(SECRET, "alice", ttl=2, channel="vip:gala") for _ in range(8)]
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    assert await page.evaluate(LOAD)
    await page.evaluate(
        """async ({ url, connection, tokens }) => {
            window.received = [];
            window.tokensUsed = 0;
            window.client = new window.hubbub.Client(url, { token: connection, minReconnectDelay: 10 });
            await window.client.connect();
            window.subscription = await window.client.subscribe("vip:gala", {
                token: async () => tokens[window.tokensUsed++],
                onPublication: (publication) => window.received.push(publication.data),
            });
            await window.client.publish("vip:gala", { t: "from js \\u2028 \\u2029 \\u0085" });
        }""",
        {"url": server.url, "connection": mint_token(SECRET, "alice"), "tokens": tokens},
    )
    weird = "a\u2028b\u2029c\u0085d"
    await server.hub.publish("vip:gala", Raw(('{"t":"' + weird + '"}').encode()))
    await page.wait_for_function("window.received.length === 2", timeout=5000)
    # Cut by the server, asked to reconnect; published meanwhile; recovered on return.
    await server.hub.disconnect_user("alice", DisconnectCode.FORCE_RECONNECT)
    await server.hub.publish("vip:gala", Raw(('{"t":"again ' + weird + '"}').encode()))
    await page.wait_for_function("window.received.length === 3", timeout=10000)
    # Past the first tokens' exp: still subscribed, because each sub_refresh push was answered.
    await page.wait_for_function("window.tokensUsed >= 4", timeout=10000)
    await server.hub.publish("vip:gala", Raw(b'{"t":\r"still here"}'))  # a lone CR as JSON whitespace
    await page.wait_for_function("window.received.length === 4", timeout=5000)
    received = await page.evaluate("window.received")
    assert received == [
        {"t": "from js \u2028 \u2029 \u0085"},
        {"t": weird},
        {"t": f"again {weird}"},
        {"t": "still here"},
    ]
    assert await page.evaluate("window.subscription.recovered") is True
    assert await page.evaluate("window.subscription.unsubscribed") is None


async def test_server_side_subscriptions_connect_data_and_rpc_in_the_browser(
    start_server: StartServer, page: Page
) -> None:
    """The connect hook gets hubbub.js's `data` and subscribes it server-side; the page gets a
    `subscribed` event, the publications, and after a forced reconnect what it missed; rpc answers."""
    from hubbub import ConnectDecision, ConnectEvent, Hooks, RpcEvent

    async def connect(event: ConnectEvent) -> ConnectDecision:
        return ConnectDecision(user=event.data["user"], channels=["default-orders"])

    async def rpc(event: RpcEvent) -> object:
        return {"method": event.method, "user": event.user, "echo": event.data}

    server = await start_server(token_secret="s" * 32, hooks=Hooks(connect=connect, rpc=rpc))
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    assert await page.evaluate(LOAD)
    answer = await page.evaluate(
        """async (url) => {
            window.received = [];
            window.client = new window.hubbub.Client(url, { data: { user: "erin" }, minReconnectDelay: 10 });
            window.client.addEventListener("subscribed", (event) => {
                window.subscription = event.detail;
                event.detail.options.onPublication = (publication) => window.received.push(publication.data);
            });
            await window.client.connect();
            return await window.client.rpc("whoami", [1, 2]);
        }""",
        server.url,
    )
    assert answer == {"method": "whoami", "user": "erin", "echo": [1, 2]}
    await page.wait_for_function("window.subscription !== undefined", timeout=5000)
    await server.publish("default-orders", {"n": 1})
    await page.wait_for_function("window.received.length === 1", timeout=5000)
    await server.disconnect("erin", reconnect=True)
    await server.publish("default-orders", {"n": 2})  # while the page is away
    await page.wait_for_function("window.received.length === 2", timeout=10000)
    assert await page.evaluate("window.received") == [{"n": 1}, {"n": 2}]
    assert await page.evaluate("window.subscription.recovered") is True
    assert await page.evaluate("window.subscription.serverSide") is True
    assert await page.evaluate("window.client.subscriptions.get('default-orders') === window.subscription")
