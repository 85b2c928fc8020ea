"""One contract suite for every IdempotencyStore: memory (one node) and Redis (shared by nodes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.backends.base import IdempotencyStore
from hubbub.backends.memory import MemoryIdempotency
from tests.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[IdempotencyStore]:
    kept: IdempotencyStore
    if request.param.startswith("redis"):
        from hubbub.backends.redis import RedisIdempotency

        url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
        kept = RedisIdempotency(url, prefix=f"test-{uuid.uuid4().hex}")
    else:
        kept = MemoryIdempotency(clock=clock)
    await kept.open()
    yield kept
    await kept.close()


async def test_the_first_claim_wins_then_others_see_pending_then_the_result(store: IdempotencyStore) -> None:
    assert await store.claim("news", "k", 60) is None
    assert await store.claim("news", "k", 60) == b""  # still publishing
    await store.complete("news", "k", b'{"offset":1}', 60)
    assert await store.claim("news", "k", 60) == b'{"offset":1}'


async def test_keys_are_per_channel(store: IdempotencyStore) -> None:
    assert await store.claim("news", "k", 60) is None
    assert await store.claim("sport", "k", 60) is None


async def test_a_released_key_can_be_claimed_again(store: IdempotencyStore) -> None:
    assert await store.claim("news", "k", 60) is None
    await store.release("news", "k")
    assert await store.claim("news", "k", 60) is None


async def test_memory_keys_expire_after_the_window_and_stay_bounded(clock: FakeClock) -> None:
    store = MemoryIdempotency(max_keys=3, clock=clock)
    assert await store.claim("news", "old", 60) is None
    await store.complete("news", "old", b"{}", 60)
    clock.now += 61
    assert await store.claim("news", "old", 60) is None  # the window passed: a new publish
    for key in ("a", "b", "c"):
        assert await store.claim("news", key, 60) is None
    assert await store.claim("news", "old", 60) is None  # the oldest went first: at most 3 kept


async def test_redis_keys_carry_the_window_as_their_ttl(redis_url: str) -> None:
    from redis.asyncio import Redis

    from hubbub.backends.redis import RedisIdempotency, RedisKeys

    prefix = f"test-{uuid.uuid4().hex}"
    store = RedisIdempotency(redis_url, prefix=prefix)
    await store.open()
    redis = Redis.from_url(redis_url)
    try:
        await store.claim("news", "k", 30)
        name = RedisKeys(prefix).idempotency("news", "k")
        assert 0 < await redis.pttl(name) <= 30_000
        await store.complete("news", "k", b"{}", 300)
        assert 30_000 < await redis.pttl(name) <= 300_000
    finally:
        await redis.aclose()
        await store.close()


async def test_a_running_call_holds_its_key_briefly_and_its_result_for_the_window(redis_url: str) -> None:
    """While the call runs the claim lives PENDING_TTL (a node dying mid-call blocks retries only
    that long); its result then lives the whole window."""
    from redis.asyncio import Redis

    from hubbub import protocol
    from hubbub.backends.redis import RedisIdempotency, RedisKeys
    from hubbub.core.idempotency import PENDING_TTL, Idempotency

    prefix = f"test-{uuid.uuid4().hex}"
    store = RedisIdempotency(redis_url, prefix=prefix)
    await store.open()
    redis = Redis.from_url(redis_url)
    name = RedisKeys(prefix).idempotency("news", "k")
    seen_while_running: list[int] = []

    async def work() -> protocol.PublishResult:
        seen_while_running.append(await redis.pttl(name))
        return protocol.PublishResult(offset=7, epoch="e")

    try:
        result = await Idempotency(store, window=300).once("news", "k", work, protocol.PublishResult)
        assert result.offset == 7
        assert 0 < seen_while_running[0] <= PENDING_TTL * 1000
        assert PENDING_TTL * 1000 < await redis.pttl(name) <= 300_000
    finally:
        await redis.aclose()
        await store.close()
