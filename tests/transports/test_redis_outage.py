"""Redis goes away and comes back: connections stay, readiness says so, publishes fail loudly."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import OpenRaw, StartServer
from tests.redis_server import free_port, redis_server, require_redis_server


async def ready_status(http: aiohttp.ClientSession, api_url: str) -> int:
    async with http.get(f"{api_url}/health/ready") as response:
        return response.status


async def test_redis_outage_and_return(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    require_redis_server()
    port = free_port()
    with redis_server(tmp_path / "first", port) as url:
        server = await start_server(broker=url, redis_prefix=f"test-{uuid.uuid4().hex}")
        client = await open_raw(server)
        epoch_before = (await client.ok("subscribe", {"channel": "news"}))["epoch"]
        await client.ok("publish", {"channel": "news", "data": "before"})
        assert (await client.next_publication())["data"] == "before"
        assert await ready_status(http, server.api_url) == 200
    # Redis is down now.
    assert server.hub is not None
    broker: Any = server.hub.broker  # a RedisBroker: wait_health is its own
    await asyncio.wait_for(broker.wait_health(False), 10)
    assert await ready_status(http, server.api_url) == 503
    reply = await client.call("publish", {"channel": "news", "data": "during"})
    assert reply["error"]["code"] == 100 and reply["error"]["temporary"] is True  # never a silent drop
    async with http.post(f"{server.api_url}/api/publish", json={"channel": "news", "data": "during"}) as response:
        assert response.status == 500 and (await response.json())["error"]["code"] == 100
    assert await client.ok("ping") == {}  # the WebSocket connection stayed
    with redis_server(tmp_path / "second", port):
        await asyncio.wait_for(broker.wait_health(True), 30)  # it reconnects with backoff
        assert await ready_status(http, server.api_url) == 200
        # This Redis came back empty: offsets start again under a new epoch, so the subscriber's
        # position means nothing now. It is asked to reconnect (3011) and is told recovered: false,
        # rather than have its client drop new publications whose offsets it has seen before.
        assert await client.close_code() == 3011
        client = await open_raw(server)
        async with asyncio.timeout(10):
            while True:  # the first command after the outage may meet a stale pooled connection
                reply = await client.call("publish", {"channel": "news", "data": "after"})
                if "error" not in reply:
                    break
        # Offsets start again (1, or 2 if a retried attempt had appended): only the epoch tells
        # this stream from the lost one.
        result = await client.ok("subscribe", {"channel": "news", "since": {"offset": 1, "epoch": epoch_before}})
        assert result["recovered"] is False and result["epoch"] != epoch_before
        await client.ok("publish", {"channel": "news", "data": "later"})
        assert (await client.next_publication())["data"] == "later"
