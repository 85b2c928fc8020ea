"""Where WebSockets cannot go, in Debian's chromium: the browser's own EventSource on
/connection/sse (through a server restart), and hubbub.js falling back to HTTP streaming when
the page cannot open a WebSocket, then back once it can."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import aiohttp
from msgspec import Raw
from playwright.async_api import Page

from bench.process import ServerProcess
from tests.conftest import StartServer
from tests.e2e.test_browser_client import LOAD
from tests.redis_server import free_port
from tests.scale.test_http_transports import forwarded_messages, wait_for_front
from tests.scale.test_nginx import nginx

# Collects what an EventSource dispatches (no SDK: the browser's own reconnect and Last-Event-ID).
EVENT_SOURCE = """(url) => {
    window.seen = [];
    window.states = [];
    const source = new EventSource(url);
    window.source = source;
    source.onmessage = (event) => window.seen.push({ kind: "publication", data: JSON.parse(event.data).data,
                                                      id: event.lastEventId });
    for (const kind of ["subscribed", "unrecovered", "disconnect"]) {
        source.addEventListener(kind, (event) => window.seen.push({ kind, detail: JSON.parse(event.data) }));
    }
    source.onerror = () => window.states.push(source.readyState);
    return true;
}"""


async def publications_seen(page: Page, count: int) -> list[object]:
    await page.wait_for_function(
        "(count) => window.seen.filter((e) => e.kind === 'publication').length >= count", arg=count, timeout=20000
    )
    seen = await page.evaluate("window.seen.filter((e) => e.kind === 'publication').map((e) => e.data)")
    assert isinstance(seen, list)
    return seen


async def test_event_source_resumes_after_a_server_restart_with_every_missed_event_once(
    start_server: StartServer, tmp_path: Path, page: Page
) -> None:
    history = str(tmp_path / "sse-restart.db")
    # Browsers wait `retry:` before they reconnect (here 2.5-7.5 s): the publications made on
    # the new server before that are the ones the stream missed.
    first = await start_server(history_path=history, sse_retry=5.0)
    port, api_port = first.port, first.api_port
    await page.goto(f"http://127.0.0.1:{port}/health")
    assert await page.evaluate(EVENT_SOURCE, "/connection/sse?channel=news")
    await page.wait_for_function("window.seen.some((e) => e.kind === 'subscribed')", timeout=10000)
    assert first.hub is not None
    for n in range(3):
        await first.hub.publish("news", Raw(b"%d" % n))
    assert await publications_seen(page, 3) == [0, 1, 2]
    await first.close()  # clean: SQLite history keeps its epoch
    await page.wait_for_function("window.seen.some((e) => e.kind === 'disconnect')", timeout=10000)
    second = await start_server(history_path=history, port=port, api_port=api_port, sse_retry=5.0)
    assert second.hub is not None
    for n in range(3, 6):  # the stream is away: these are missed
        await second.hub.publish("news", Raw(b"%d" % n))
    assert second.hub.counts().connections == 0  # published before the browser came back
    resumed = await page.wait_for_function(
        "window.seen.filter((e) => e.kind === 'subscribed').length >= 2", timeout=20000
    )
    assert resumed
    for n in range(6, 8):
        await second.hub.publish("news", Raw(b"%d" % n))
    assert await publications_seen(page, 8) == list(range(8))  # once each, in order
    subscribed = await page.evaluate("window.seen.filter((e) => e.kind === 'subscribed').map((e) => e.detail)")
    assert subscribed[1]["was_recovering"] is True and subscribed[1]["recovered"] is True
    ids = await page.evaluate("window.seen.filter((e) => e.kind === 'publication').map((e) => e.id)")
    assert ids[-1].startswith("news=8.")
    await page.evaluate("window.source.close()")


# Replaces the page's WebSocket with one that never opens, as a proxy that breaks upgrades does;
# `window.allowWebSockets()` puts the real one back.
BLOCK_WEBSOCKETS = """() => {
    const Real = window.WebSocket;
    class Refused extends EventTarget {
        constructor(url) {
            super();
            this.url = url;
            this.readyState = 0;
            setTimeout(() => {
                this.readyState = 3;
                if (this.onerror) this.onerror(new Event("error"));
                if (this.onclose) this.onclose({ code: 1006, reason: "", wasClean: false });
            }, 10);
        }
        send() { throw new Error("not open"); }
        close() {}
    }
    window.WebSocket = Refused;
    window.allowWebSockets = () => { window.WebSocket = Real; };
}"""


async def test_hubbub_js_falls_back_to_http_streaming_and_back(
    start_server: StartServer, tmp_path: Path, page: Page
) -> None:
    server = await start_server(history_path=str(tmp_path / "fallback.db"))
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    assert await page.evaluate(LOAD)
    await page.evaluate(BLOCK_WEBSOCKETS)
    transport = await page.evaluate(
        """async (url) => {
            window.received = [];
            const client = new window.hubbub.Client(url, { upgradeInterval: 300, minReconnectDelay: 50 });
            window.client = client;
            await client.connect();
            await client.subscribe("news", { onPublication: (p) => window.received.push(p.data) });
            await client.publish("news", { n: 0 });  // a command POSTed, its publication streamed back
            return client.transport;
        }""",
        server.url,
    )
    assert transport == "http-stream"
    await page.wait_for_function("window.received.length >= 1", timeout=10000)
    assert server.hub is not None
    for n in range(1, 4):
        await server.hub.publish("news", Raw(b'{"n":%d}' % n))
    await page.wait_for_function("window.received.length >= 4", timeout=10000)
    await page.evaluate("window.allowWebSockets()")
    await page.wait_for_function(
        "window.client.transport === 'websocket' && window.client.state === 'connected'", timeout=20000
    )
    for n in range(4, 7):
        await server.hub.publish("news", Raw(b'{"n":%d}' % n))
    await page.wait_for_function("window.received.length >= 7", timeout=10000)
    await page.evaluate("window.client.publish('news', { n: 7 })")  # now over the WebSocket
    await page.wait_for_function("window.received.length >= 8", timeout=10000)
    received = await page.evaluate("window.received.map((d) => d.n)")
    assert received == list(range(8))  # nothing lost or doubled across either switch
    await page.evaluate("window.client.close()")


def without_upgrades(config: str) -> str:
    """deploy/nginx.conf as an older proxy would run it: the Upgrade header is not passed on."""
    edited = config.replace("proxy_set_header Upgrade $http_upgrade;", "")
    assert edited != config
    return edited


async def test_behind_a_proxy_that_breaks_upgrades_hubbub_js_streams_over_two_nodes(
    redis_url: str, tmp_path: Path, page: Page
) -> None:
    """nginx (deploy/nginx.conf without its Upgrade line) before two nodes and one Redis, no
    stickiness: the WebSocket cannot open, hubbub.js streams instead, and its command POSTs land
    on the other node (least_conn), which passes them on through the broker."""
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        flags = ("--broker", redis_url, "--redis-prefix", prefix)
        nodes = [await stack.enter_async_context(ServerProcess.start(None, *flags)) for _ in range(2)]
        front = free_port()
        await stack.enter_async_context(nginx(tmp_path / "nginx", front, [n.port for n in nodes], without_upgrades))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        await wait_for_front(http, f"http://127.0.0.1:{front}")
        await page.goto(f"http://127.0.0.1:{front}/health")
        assert await page.evaluate(LOAD)
        transport = await page.evaluate(
            """async (url) => {
                window.received = [];
                const client = new window.hubbub.Client(url, { minReconnectDelay: 50 });
                window.client = client;
                await client.connect();
                await client.subscribe("news", { onPublication: (p) => window.received.push(p.data) });
                await client.publish("news", "from the page");
                return client.transport;
            }""",
            f"ws://127.0.0.1:{front}/connection/websocket",
        )
        assert transport == "http-stream"
        for node in nodes:  # published on each node: both reach the stream
            async with http.post(f"{node.api_url}/api/publish", json={"channel": "news", "data": node.port}) as sent:
                assert sent.status == 200
        await page.wait_for_function("window.received.length >= 3", timeout=15000)
        received = await page.evaluate("window.received")
        assert received == ["from the page", nodes[0].port, nodes[1].port]
        assert await forwarded_messages(http, nodes) >= 1
        await page.evaluate("window.client.close()")
