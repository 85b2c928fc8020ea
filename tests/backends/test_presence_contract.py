"""Presence contract, over memory and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.backends.base import PresenceStore
from hubbub.backends.memory import MemoryPresence
from tests.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def presence(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[PresenceStore]:
    if request.param.startswith("redis"):
        from hubbub.backends.redis import RedisPresence

        url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
        store: PresenceStore = RedisPresence(url, prefix=f"test-{uuid.uuid4().hex}", ttl=30, clock=clock)
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
