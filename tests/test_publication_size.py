"""max_publication_bytes: a poison publication is refused on every path in, before Redis sees
it, while other clients keep receiving (issue 20: one 33 MB publication made Redis drop every
node's pub/sub connection, python-socketio #1581)."""

from __future__ import annotations

import io
import uuid

import aiohttp
import pytest

from hubbub.errors import CommandError, ErrorCode
from tests.conftest import OpenRaw, StartServer


async def test_oversized_publications_are_refused_on_every_path(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession, redis_url: str
) -> None:
    server = await start_server(max_publication_bytes=1000, broker=redis_url, redis_prefix=f"t-{uuid.uuid4().hex}")
    reader = await open_raw(server)
    await reader.ok("subscribe", {"channel": "news"})
    writer = await open_raw(server)
    big = "x" * 2000
    reply = await writer.call("publish", {"channel": "news", "data": big})  # a WebSocket client
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED and "max_publication_bytes" in reply["error"]["message"]
    reply = await writer.call("send", {"user": "bob", "data": big})
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    for path, body in (
        ("publish", {"channel": "news", "data": big}),
        ("broadcast", {"channels": ["news"], "data": big}),
        ("batch", {"publications": [{"channel": "news", "data": 1}, {"channel": "news", "data": big}]}),
        ("send", {"user": "bob", "data": big}),
    ):
        async with http.post(f"{server.api_url}/api/{path}", json=body) as response:
            assert response.status == 413, path
            assert (await response.json())["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    with pytest.raises(CommandError) as refused:
        await server.publish("news", big)  # in-process
    assert refused.value.code == ErrorCode.LIMIT_EXCEEDED
    async with http.post(
        f"{server.api_url}/api/publish", data=io.BytesIO(b'{"channel":"news","data":"' + b"x" * 40_000_000 + b'"}')
    ) as response:
        assert response.status == 413  # 40 MB: refused from its size, never read into Redis
    await writer.ok("publish", {"channel": "news", "data": "small"})
    assert (await reader.next_publication())["data"] == "small"  # nothing of the batch went out either
    assert server.hub is not None and (await server.hub.stream_top("news")).offset == 1
