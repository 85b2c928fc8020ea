"""HTTP streaming with commands: a streamed response for the server's messages, POSTs for the
client's, in order, deduplicated, bounded; across nodes through the broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.errors import DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import StartServer
from tests.redis_server import free_port, redis_server, require_redis_server
from tests.streams import StreamReader


def base(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/connection/stream"


@contextlib.asynccontextmanager
async def stream(http: aiohttp.ClientSession, server: Server) -> AsyncIterator[StreamReader]:
    async with http.post(base(server)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/x-ndjson"
        assert response.headers["X-Accel-Buffering"] == "no"
        yield await StreamReader(response).open()


async def post(
    http: aiohttp.ClientSession, server: Server, stream_id: str, seq: int, *commands: dict[str, Any]
) -> aiohttp.ClientResponse:
    body = json.dumps({"stream": stream_id, "seq": seq}) + "\n" + "\n".join(json.dumps(c) for c in commands)
    async with http.post(base(server) + "/send", data=body.encode()) as response:
        await response.read()
        return response


async def closed_code(reader: StreamReader) -> int:
    """The code of the stream's last line (a disconnect push may come before it)."""
    while True:
        message = await reader.next_message()
        if "closed" in message:
            code: int = message["closed"]["code"]
            return code


async def connected(http: aiohttp.ClientSession, server: Server, reader: StreamReader, seq: int = 1) -> None:
    response = await post(http, server, reader.stream_id, seq, {"id": 1, "connect": {}})
    assert response.status == 202
    assert "connect" in await reader.reply(1)


async def test_commands_go_in_by_post_and_replies_and_pushes_come_down_the_stream(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        response = await post(
            http,
            server,
            reader.stream_id,
            2,
            {"id": 2, "subscribe": {"channel": "news"}},
            {"id": 3, "publish": {"channel": "news", "data": {"via": "stream"}}},
        )
        assert response.status == 202
        assert "subscribe" in await reader.reply(2)
        seen = [await reader.next_message(), await reader.next_message()]
        pushes = [m["push"]["pub"]["data"] for m in seen if "push" in m]
        assert pushes == [{"via": "stream"}] and any(m.get("id") == 3 for m in seen)


async def test_overtaken_posts_run_in_seq_order_and_a_retried_copy_runs_once(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        await post(http, server, reader.stream_id, 2, {"id": 2, "subscribe": {"channel": "news"}})
        await reader.reply(2)
        third = {"id": 4, "publish": {"channel": "news", "data": "second"}}
        second = {"id": 3, "publish": {"channel": "news", "data": "first"}}
        assert (await post(http, server, reader.stream_id, 4, third)).status == 202  # arrives first
        assert (await post(http, server, reader.stream_id, 3, second)).status == 202
        assert (await post(http, server, reader.stream_id, 3, second)).status == 202  # a retry: dropped
        await post(http, server, reader.stream_id, 5, {"id": 5, "ping": {}})
        data, replies = [], []
        while 5 not in replies:
            message = await reader.next_message()
            if "push" in message:
                data.append(message["push"]["pub"]["data"])
            else:
                replies.append(message["id"])
        assert data == ["first", "second"] and replies == [3, 4, 5]  # in seq order, the copy ran not


async def test_a_gap_that_never_fills_reconnects_the_client(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(stream_reorder_timeout=0.2)
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        await post(http, server, reader.stream_id, 3, {"id": 3, "ping": {}})  # seq 2 never comes
        assert await closed_code(reader) == DisconnectCode.FORCE_RECONNECT
        with pytest.raises(EOFError):
            await reader.next_message()


async def test_bad_posts_get_clear_answers(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(max_message_bytes=1024)
    async with stream(http, server) as reader:
        send = base(server) + "/send"
        async with http.post(send, data=b"x" * 2000) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
        async with http.post(send, data=b"no envelope") as response:
            assert response.status == 400
        async with http.post(send, data=b'{"stream":"x","seq":0}\n{}') as response:
            assert response.status == 400
        async with http.post(send, data=b'{"stream":"nope","seq":1}\n{"id":1,"ping":{}}') as response:
            assert response.status == 404  # one node (memory broker): no other could hold it
        async with http.get(send) as response:
            assert response.status == 405

        async def chunked() -> AsyncIterator[bytes]:
            yield b"{}"

        async with http.post(send, data=chunked()) as response:
            assert response.status == 411
        async with http.post(base(server), data=b"a body") as response:
            assert response.status == 400
        # A message that is not a command: the stream's session closes as a WebSocket's would.
        await post(http, server, reader.stream_id, 1, {"no": "id"})
        assert await closed_code(reader) == DisconnectCode.BAD_REQUEST


async def test_send_posts_are_rate_limited_per_ip(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(stream_send_rate_per_ip=0.001, stream_send_burst_per_ip=2)
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        assert (await post(http, server, reader.stream_id, 2, {"id": 2, "ping": {}})).status == 202
        assert (await post(http, server, reader.stream_id, 3, {"id": 3, "ping": {}})).status == 429


async def test_a_client_that_posts_faster_than_its_commands_run_is_cut(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(max_queued_messages=2, stream_reorder_timeout=30)
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        for seq in range(4, 8):  # ahead of a seq 2 that never comes: more than max_queued_messages
            await post(http, server, reader.stream_id, seq, {"id": seq, "ping": {}})
        assert await closed_code(reader) == DisconnectCode.BAD_REQUEST


async def test_the_stream_ends_with_the_close_a_websocket_would_get(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    async with stream(http, server) as reader:
        await connected(http, server, reader)
        await server.close()
        assert await closed_code(reader) == DisconnectCode.GOING_AWAY


async def test_a_post_to_another_node_reaches_the_stream_through_the_broker(
    start_server: StartServer, http: aiohttp.ClientSession, redis_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    owner = await start_server(broker=redis_url, redis_prefix=prefix)
    other = await start_server(broker=redis_url, redis_prefix=prefix)
    async with stream(http, owner) as reader:
        response = await post(http, other, reader.stream_id, 1, {"id": 1, "connect": {}})
        assert response.status == 202
        assert "connect" in await reader.reply(1)
        await post(http, owner, reader.stream_id, 3, {"id": 3, "ping": {}})  # overtakes seq 2
        await post(http, other, reader.stream_id, 2, {"id": 2, "subscribe": {"channel": "news"}})
        assert "subscribe" in await reader.reply(2)
        assert await reader.next_message() == {"id": 3, "ping": {}}
        assert other.hub is not None and other.hub.stats.stream_messages["broker"] == 2


async def test_a_post_the_broker_cannot_take_gets_503_to_retry(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    require_redis_server()
    with redis_server(tmp_path / "redis", free_port()) as url:
        server = await start_server(broker=url, redis_prefix=f"test-{uuid.uuid4().hex}")
    assert server.hub is not None
    broker: Any = server.hub.broker  # a RedisBroker: wait_health is its own
    await asyncio.wait_for(broker.wait_health(False), 10)
    body = b'{"stream":"on-another-node","seq":1}\n{"id":1,"ping":{}}'
    async with http.post(base(server) + "/send", data=body) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == ErrorCode.INTERNAL
