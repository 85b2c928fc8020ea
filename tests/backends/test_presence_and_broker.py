"""Presence contract (memory and Redis) and the Redis broker between two nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.backends.base import PresenceStore
from hubbub.backends.memory import MemoryPresence


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def presence(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[PresenceStore]:
    if request.param == "redis":
        from hubbub.backends.redis import RedisPresence

        store: PresenceStore = RedisPresence(
            request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex}", ttl=30, clock=clock
        )
    else:
        store = MemoryPresence()
    yield store
    await store.close()


async def test_presence_adds_lists_and_removes(presence: PresenceStore) -> None:
    await presence.add("room", "c1", b'{"user":"alice","client":"c1"}')
    await presence.add("room", "c2", b'{"user":"bob","client":"c2"}')
    await presence.add("other", "c3", b'{"user":"carol","client":"c3"}')
    assert set(await presence.get("room")) == {"c1", "c2"}
    assert (await presence.get("room"))["c1"] == b'{"user":"alice","client":"c1"}'
    await presence.remove("room", "c1")
    await presence.remove("room", "missing")
    assert set(await presence.get("room")) == {"c2"}
    assert await presence.get("empty") == {}


async def test_redis_presence_of_a_node_that_stops_refreshing_expires(redis_url: str, clock: FakeClock) -> None:
    """A node that dies stops refreshing: its entries vanish after the TTL; live nodes' stay."""
    from hubbub.backends.redis import RedisPresence

    prefix = f"test-{uuid.uuid4().hex}"
    dead = RedisPresence(redis_url, prefix=prefix, ttl=30, clock=clock)
    alive = RedisPresence(redis_url, prefix=prefix, ttl=30, clock=clock)
    try:
        await dead.add("room", "gone", b'{"user":"x","client":"gone"}')
        await alive.add("room", "here", b'{"user":"y","client":"here"}')
        clock.now += 20
        await alive.refresh()
        assert set(await alive.get("room")) == {"gone", "here"}
        clock.now += 15  # 35 s after the dead node's last write, 15 s after the live node's
        assert set(await alive.get("room")) == {"here"}
    finally:
        await dead.close()
        await alive.close()


class Recorder:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        self.messages.put_nowait((channel, offset, frame))

    def on_control(self, message: bytes) -> None:
        self.messages.put_nowait(("control", message))


async def test_redis_broker_fans_out_between_nodes_in_order(redis_url: str) -> None:
    from hubbub.backends.redis import RedisBroker

    prefix = f"test-{uuid.uuid4().hex}"
    nodes = [RedisBroker(redis_url, prefix) for _ in range(2)]
    recorders = [Recorder() for _ in nodes]
    try:
        for node, recorder in zip(nodes, recorders, strict=True):
            node.set_handler(recorder)
            await node.start()
            assert node.healthy
        await nodes[1].subscribe("news")
        for offset in range(1, 51):
            await nodes[0].publish("news", offset, b'{"push":%d}' % offset)
        await nodes[0].publish_many([("elsewhere", None, b"not for node 1")])
        await nodes[0].publish("news", None, b"join")
        received = [await asyncio.wait_for(recorders[1].messages.get(), 5) for _ in range(51)]
        assert received[:50] == [("news", n, b'{"push":%d}' % n) for n in range(1, 51)]
        assert received[50] == ("news", None, b"join")
        await nodes[1].publish_control(b'{"kind":"message"}')
        for recorder in recorders:
            assert await asyncio.wait_for(recorder.messages.get(), 5) == ("control", b'{"kind":"message"}')
        assert recorders[0].messages.empty()  # node 0 never subscribed to news
    finally:
        for node in nodes:
            await node.close()
