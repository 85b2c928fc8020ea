"""Live data over real sockets: conflation under a stalled reader, snapshots, the demo feed."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
from msgspec import Raw

from hubbub.config import NamespaceOptions
from tests.conftest import OpenRaw, StartServer
from tests.wire import BareWebSocket

LIVE = {"ticker": NamespaceOptions(history_size=1, conflate=True, allow_anonymous=True)}
CHANNELS = [f"ticker:S{n}" for n in range(20)]


async def test_stalled_reader_gets_latest_values_with_bounded_memory(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    """A reader stops reading for 2 s while 20 channels update fast; it is never cut, the server
    holds at most one pending value per channel for it, and when it resumes it gets the newest
    value of every channel, not the whole backlog. A fast reader meanwhile sees every update."""
    server = await start_server(namespaces=LIVE, history_path=None)
    hub = server.hub
    assert hub is not None
    fast = await open_raw(server)
    slow = await BareWebSocket.open(server.url)
    try:
        await _stall_and_resume(hub, fast, slow)
    finally:
        slow.close()


async def _stall_and_resume(hub: Any, fast: Any, slow: BareWebSocket) -> None:
    await slow.send_json({"id": 1, "connect": {}})
    for number, channel in enumerate(CHANNELS, start=2):
        await slow.send_json({"id": number, "subscribe": {"channel": channel}})
        await fast.ok("subscribe", {"channel": channel})
    replies = 0
    while replies < len(CHANNELS) + 1:
        replies += sum(1 for message in await slow.read_messages() if "id" in message)
    fast_id = next(iter(hub.sessions))  # the fast raw client connected first
    slow_session = next(s for s in hub.sessions.values() if s.client_id != fast_id)
    padding = "x" * 2000
    published = 0
    latest: dict[str, int] = {}
    peak = 0
    loop = asyncio.get_running_loop()
    stall_ends = loop.time() + 2.0
    while loop.time() < stall_ends:  # the slow reader reads nothing for 2 s
        for channel in CHANNELS:
            published += 1
            latest[channel] = published
            await hub.publish(channel, Raw(json.dumps({"n": published, "pad": padding}).encode()))
        await asyncio.sleep(0)  # a yield so flushes run, as with a real feed
        peak = max(peak, slow_session.outbox.queued_bytes)
        for _ in CHANNELS:  # the fast reader keeps up with every update
            await fast.next_publication()
    assert slow_session.client_id in hub.sessions, "the conflated reader was cut"
    assert hub.stats.dropped["conflated"] > 0
    # Bounded by channels, not by time: what one loop turn queued before the pause was noticed,
    # plus the newest value per channel (docs/live-data.md).
    assert peak <= 2 * len(CHANNELS) * (len(padding) + 200), f"outbox peaked at {peak} bytes"
    # Resume: read until the newest value of every channel has arrived.
    seen: dict[str, int] = {}
    received = 0
    async with asyncio.timeout(30):
        while any(seen.get(channel) != number for channel, number in latest.items()):
            for message in await slow.read_messages():
                push = message.get("push", {})
                if "pub" in push:
                    received += 1
                    seen[push["channel"]] = push["pub"]["data"]["n"]
    assert received < published / 2, f"the backlog came through: {received} of {published}"


async def test_subscribe_gets_the_latest_value_at_once(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(namespaces=LIVE)
    assert server.hub is not None
    for price in (101, 102, 103):
        await server.hub.publish("ticker:ABC", Raw(b'{"price":%d}' % price))
    reader = await open_raw(server)
    result = await reader.ok("subscribe", {"channel": "ticker:ABC"})
    assert [p["data"]["price"] for p in result["publications"]] == [103]


async def test_demo_ticker_publishes_prices_scores_and_an_index(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    from hubbub.config import Settings

    server = await start_server(namespaces=Settings().namespaces)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "demo",
        "ticker",
        "--url",
        server.api_url,
        "--symbols",
        "5",
        "--rate",
        "500",
        "--duration",
        "1.5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert b"updates/s" in output
    async with http.get(f"{server.api_url}/api/history?channel=ticker:symbols") as response:
        index = (await response.json())["publications"][0]["data"]
    assert len(index["symbols"]) == 5 and index["games"]
    symbol = index["symbols"][0]
    async with http.get(f"{server.api_url}/api/history?channel=ticker:{symbol}") as response:
        body = await response.json()
    assert body["offset"] > 10  # many updates, one kept (conflated history of one)
    price = body["publications"][0]["data"]
    assert price["symbol"] == symbol and price["price"] > 0 and "ts" in price
    async with http.get(f"{server.api_url}/api/history?channel=scores:game1") as response:
        assert (await response.json())["publications"][0]["data"]["home"]
