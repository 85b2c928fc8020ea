"""Limits that were bare numbers are settings now: each one reaches the part it limits."""

from __future__ import annotations

import aiohttp

from hubbub import protocol
from hubbub.config import Settings
from hubbub.errors import ErrorCode
from tests.conftest import StartServer
from tests.core.test_session import connected
from tests.helpers import ManualLoop, make_hub


async def test_max_publish_batch_bounds_api_batches(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(max_publish_batch=2)
    body = {"publications": [{"channel": "news", "data": n} for n in range(3)]}
    async with http.post(f"{server.api_url}/api/batch", json=body) as response:
        assert response.status != 200 and (await response.json())["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    body["publications"] = body["publications"][:2]
    async with http.post(f"{server.api_url}/api/batch", json=body) as response:
        assert response.status == 200


async def test_max_outbox_bytes_none_never_cuts_a_slow_reader() -> None:
    """None disables the slow-consumer cut (memory then grows with the backlog: documented)."""
    loop = ManualLoop()
    hub = make_hub(loop, max_outbox_bytes=None)
    slow = await connected(hub, loop)
    await slow.ok("subscribe", {"channel": "news"})
    slow.sink.paused = True
    for _ in range(3000):  # 3000 x ~700 bytes: twice the default limit
        await hub.publish("news", protocol.Raw(b'"%s"' % (b"x" * 640)))
        loop.run_ready()
    assert slow.sink.closed_with is None and slow.session.outbox.queued_bytes > Settings().max_outbox_bytes  # type: ignore[operator]


async def test_connection_settings_reach_every_connection(start_server: StartServer) -> None:
    server = await start_server(max_queued_messages=8, close_timeout=None, flush_slice=64)
    assert server._endpoint is not None and server.hub is not None
    options = server._endpoint._options
    assert (options.max_queued_messages, options.resume_queued_messages, options.close_timeout) == (8, 2, None)
    assert server.hub.flusher._slice_size == 64


async def test_redis_settings_reach_the_pools(start_server: StartServer, redis_url: str) -> None:
    server = await start_server(broker=redis_url, redis_max_connections=7, redis_socket_timeout=3.5)
    assert server.hub is not None
    pool = server.hub.broker._redis.connection_pool  # type: ignore[attr-defined]
    assert pool.max_connections == 7 and pool.connection_kwargs["socket_timeout"] == 3.5
