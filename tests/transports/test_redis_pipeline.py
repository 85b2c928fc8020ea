"""Over Redis, the single publishes of one loop turn travel together: one pipeline of appends,
one of publishes, in order; other nodes get them in one go and their subscribers in few frames."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest
from msgspec import Raw

from hubbub.errors import CommandError, ErrorCode
from tests.conftest import StartServer
from tests.redis_server import free_port, redis_server, require_redis_server


async def test_a_turns_publishes_reach_another_node_together_in_order(
    start_server: StartServer, redis_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    publisher = await start_server(broker=redis_url, redis_prefix=prefix)
    receiver = await start_server(broker=redis_url, redis_prefix=prefix)
    assert publisher.hub is not None
    async with aiohttp.ClientSession() as http, http.ws_connect(receiver.url, protocols=["hubbub.json.v1"]) as ws:
        await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"news"}}')
        replies = 0
        while replies < 2:
            replies += (await ws.receive_str()).count('"id":')
        results = await asyncio.gather(*(publisher.hub.publish("news", Raw(b"%d" % n)) for n in range(100)))
        assert [result.offset for result in results] == list(range(1, 101))  # offsets in submission order
        frames = 0
        seen: list[int] = []
        async with asyncio.timeout(10):
            while len(seen) < 100:
                frame = await ws.receive_str()
                frames += 1
                seen += [json.loads(line)["push"]["pub"]["data"] for line in frame.split("\n")]
        assert seen == list(range(100))
        assert frames <= 10, frames  # one per publication without the pipeline: they came together


async def test_one_bad_channel_fails_only_its_own_publish(start_server: StartServer, redis_url: str) -> None:
    server = await start_server(broker=redis_url, redis_prefix=f"test-{uuid.uuid4().hex}")
    assert server.hub is not None
    good = [server.hub.publish("news", Raw(b"%d" % n)) for n in range(3)]
    outcomes = await asyncio.gather(
        *good[:2], server.hub.publish("nowhere:x", Raw(b"1")), good[2], return_exceptions=True
    )
    assert isinstance(outcomes[2], CommandError) and outcomes[2].code == ErrorCode.UNKNOWN_CHANNEL
    assert [outcome.offset for i, outcome in enumerate(outcomes) if i != 2] == [1, 2, 3]  # type: ignore[union-attr]


async def test_when_redis_fails_every_publish_of_the_turn_gets_a_temporary_error(
    start_server: StartServer, tmp_path: Path
) -> None:
    require_redis_server()
    with redis_server(tmp_path / "redis", free_port()) as url:
        server = await start_server(broker=url, redis_prefix=f"test-{uuid.uuid4().hex}", redis_socket_timeout=1.0)
    assert server.hub is not None
    outcomes = await asyncio.gather(
        *(server.hub.publish("news", Raw(b"%d" % n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, CommandError) and o.code == ErrorCode.INTERNAL and o.temporary for o in outcomes)
    with pytest.raises(CommandError):  # and the next turn's too: nothing stays stuck
        await server.hub.publish("news", Raw(b"6"))
