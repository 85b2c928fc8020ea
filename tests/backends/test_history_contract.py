"""One contract suite for every HistoryStore (a Redis store joins by adding a factory)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hubbub.backends import sqlite as sqlite_module
from hubbub.backends.base import HistoryStore, StreamTop
from hubbub.backends.memory import MemoryHistory
from hubbub.backends.sqlite import SqliteHistory
from tests.helpers import FakeClock


async def memory_store(tmp_path: Path, clock: FakeClock) -> HistoryStore:
    return MemoryHistory(clock=clock)


async def sqlite_store(tmp_path: Path, clock: FakeClock) -> HistoryStore:
    store = SqliteHistory(str(tmp_path / "history.db"), clock=clock)
    await store.open()
    return store


async def sqlite_gathering_store(tmp_path: Path, clock: FakeClock) -> HistoryStore:
    """Rows gather for longer than any test: every read merges them with the file's."""
    store = SqliteHistory(str(tmp_path / "history.db"), clock=clock, commit_interval=3600.0)
    await store.open()
    return store


Factory = Callable[[Path, FakeClock], Awaitable[HistoryStore]]
FACTORIES: dict[str, Factory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "sqlite-gathering": sqlite_gathering_store,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "sqlite-gathering", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[HistoryStore]:
    if request.param.startswith("redis"):
        from hubbub.backends.redis import RedisHistory

        url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
        history: HistoryStore = RedisHistory(url, prefix=f"test-{uuid.uuid4().hex}", clock=clock)
        await history.open()
    else:
        history = await FACTORIES[request.param](tmp_path, clock)
    yield history
    await history.close()


async def append(store: HistoryStore, channel: str, n: int, size: int = 100, ttl: float = 60) -> list[int]:
    return [(await store.append(channel, b"%d" % i, None, size=size, ttl=ttl)).offset for i in range(n)]


async def test_offsets_start_at_one_and_increase_by_one(store: HistoryStore) -> None:
    assert await append(store, "a", 5) == [1, 2, 3, 4, 5]
    assert await append(store, "b", 2) == [1, 2]


async def test_epoch_is_stable_for_a_stream(store: HistoryStore) -> None:
    """The epoch seen before the first publication is the epoch of the stream afterwards."""
    before = await store.top("a")
    assert before.offset == 0
    top = await store.append("a", b"1", None, size=10, ttl=60)
    assert top.epoch == before.epoch
    assert (await store.read("a")).top == top
    assert (await store.top("b")).epoch != top.epoch


async def test_read_returns_data_and_info_in_order(store: HistoryStore) -> None:
    await store.append("a", b'{"x":1}', b'{"user":"u","client":"c"}', size=10, ttl=60)
    await store.append("a", b"[2]", None, size=10, ttl=60)
    page = await store.read("a")
    assert [(p.offset, p.data, p.info) for p in page.publications] == [
        (1, b'{"x":1}', b'{"user":"u","client":"c"}'),
        (2, b"[2]", None),
    ]


async def test_each_publication_keeps_the_time_it_was_stored(store: HistoryStore, clock: FakeClock) -> None:
    """What a chat shows as the message's time, after a reload or a recovery too."""
    await store.append("a", b"1", None, size=10, ttl=60)
    clock.now += 42.5
    await store.append("a", b"2", None, size=10, ttl=60)
    page = await store.read("a")
    assert [p.time for p in page.publications] == [1_000_000.0, 1_000_042.5]


async def test_read_after_limit_and_reverse(store: HistoryStore) -> None:
    await append(store, "a", 10)
    assert [p.offset for p in (await store.read("a", after=7)).publications] == [8, 9, 10]
    assert [p.offset for p in (await store.read("a", after=2, limit=3)).publications] == [3, 4, 5]
    assert [p.offset for p in (await store.read("a", reverse=True, limit=3)).publications] == [10, 9, 8]
    assert [p.offset for p in (await store.read("a", after=5, reverse=True, limit=2)).publications] == [4, 3]
    assert (await store.read("a", limit=0)).publications == []


async def test_size_keeps_only_the_newest(store: HistoryStore) -> None:
    await append(store, "a", 8, size=3)
    page = await store.read("a")
    assert [p.offset for p in page.publications] == [6, 7, 8]
    assert page.top.offset == 8


async def test_ttl_expires_old_publications(store: HistoryStore, clock: FakeClock) -> None:
    await append(store, "a", 2, ttl=10)
    clock.now += 5
    await append(store, "a", 1, ttl=10)
    clock.now += 6
    page = await store.read("a")
    assert [p.offset for p in page.publications] == [3]
    assert page.top.offset == 3


async def test_channels_lists_streams_with_publications(store: HistoryStore) -> None:
    await store.top("empty")
    await append(store, "b", 1)
    await append(store, "a", 1)
    assert sorted(await store.channels()) == ["a", "b"]


async def test_sqlite_history_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    """Offsets and epoch continue after reopening the file: recovery works across restarts."""
    first = await sqlite_store(tmp_path, clock)
    top = await first.append("a", b"1", None, size=10, ttl=60)
    await first.mark_read("alice", "a", 1)
    await first.close()
    second = await sqlite_store(tmp_path, clock)
    try:
        again = await second.append("a", b"2", None, size=10, ttl=60)
        assert (again.offset, again.epoch) == (2, top.epoch)
        assert [p.data for p in (await second.read("a")).publications] == [b"1", b"2"]
        assert await second.read_positions("alice", ["a"]) == {"a": 1}  # read state too
    finally:
        await second.close()


async def test_reading_unknown_channels_leaves_no_record(store: HistoryStore) -> None:
    """Clients inventing channel names cannot grow the store: reads of empty streams store nothing."""
    epochs = {}
    for i in range(50):
        epochs[i] = (await store.read(f"c{i}")).top.epoch
        assert (await store.top(f"c{i}")).epoch == epochs[i]
    assert await store.channels() == []
    top = await store.append("c7", b"1", None, size=10, ttl=60)
    assert top.epoch == epochs[7]  # a subscriber that saw the empty stream can recover its first publication


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
async def test_a_redis_stream_that_is_read_keeps_its_epoch_and_top(
    request: pytest.FixtureRequest, url_fixture: str, clock: FakeClock
) -> None:
    """A stream's meta hash (its epoch and top) outlives the last publication by META_TTL, and a
    read renews it: subscribes, recoveries and the delivery check of every live subscription
    read the top. Without that, a channel quiet for longer under a live subscriber started again
    at offset 1 under its same derived epoch, and its clients dropped every publication as a
    repeat. A read of a channel with no stream still stores nothing."""
    from hubbub.backends.redis import META_TTL, RedisHistory

    store = RedisHistory(request.getfixturevalue(url_fixture), prefix=f"test-{uuid.uuid4().hex}", clock=clock)
    await store.open()
    try:
        await append(store, "quiet", 3)
        meta = store._keys.channel("quiet", "meta")
        assert await store._redis.expire(meta, 5)  # as if nearly META_TTL had passed without a publication
        assert (await store.top("quiet")).offset == 3
        assert META_TTL - 60 < await store._redis.ttl(meta) <= META_TTL
        assert await store._redis.expire(meta, 2 * META_TTL)  # as an append of a longer history_ttl left it
        await store.read("quiet", after=1)
        assert await store._redis.ttl(meta) > META_TTL  # a read never shortens it
        assert (await store.append("quiet", b"4", None, size=10, ttl=60)).offset == 4
        await store.top("never")
        assert await store._redis.exists(store._keys.channel("never", "meta")) == 0
    finally:
        await store.close()


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
async def test_a_redis_stream_without_its_meta_hash_goes_on_from_its_newest_entry(
    request: pytest.FixtureRequest, url_fixture: str, clock: FakeClock
) -> None:
    """The meta hash outlasts its stream (a `history_ttl` above META_TTL included), and a stream
    whose meta hash is gone all the same (evicted) goes on from its newest entry under its same
    epoch. Before, a `history_ttl` above 30 days let the meta hash expire first; the channel then
    restarted at offset 1, which XADD refuses below the stream's newest ID: every publication to
    it failed until the stream expired too."""
    from hubbub.backends.redis import META_TTL, RedisHistory

    store = RedisHistory(request.getfixturevalue(url_fixture), prefix=f"test-{uuid.uuid4().hex}", clock=clock)
    await store.open()
    try:
        long = 2 * META_TTL
        await append(store, "long", 3, ttl=long)
        meta, stream = store._keys.channel("long", "meta"), store._keys.channel("long", "stream")
        assert await store._redis.ttl(meta) > await store._redis.ttl(stream) > META_TTL
        epoch = (await store.top("long")).epoch
        assert await store._redis.delete(meta) == 1
        assert await store.top("long") == StreamTop(3, epoch)
        assert await store._redis.exists(meta) == 0  # a read makes none
        top = await store.append("long", b"4", None, size=10, ttl=long)
        assert (top.offset, top.epoch) == (4, epoch)
        assert [p.offset for p in (await store.read("long", after=2)).publications] == [3, 4]
    finally:
        await store.close()


async def test_reads_see_every_append_before_them(store: HistoryStore) -> None:
    """No await between appends and the read: the read still sees them all (write-behind is invisible)."""
    for i in range(20):
        await store.append("a", b"%d" % i, None, size=100, ttl=60)
    page = await store.read("a", after=15)
    assert [p.offset for p in page.publications] == [16, 17, 18, 19, 20]
    await store.sync()
    assert (await store.top("a")).offset == 20


def simulate_crash_cleanup(store: HistoryStore) -> None:
    """Release what a dead process would have released, without marking the file clean."""
    assert isinstance(store, SqliteHistory) and store._db is not None
    store._executor.submit(store._db.close).result()
    store._executor.shutdown(wait=True)


async def test_sqlite_sync_makes_appends_survive_a_crash(tmp_path: Path, clock: FakeClock) -> None:
    """After sync() the rows are on disk even if the process dies without close()."""
    crashed = await sqlite_store(tmp_path, clock)
    await append(crashed, "a", 3)
    await crashed.sync()
    survivor = await sqlite_store(tmp_path, clock)  # opened without the first being closed: a crash
    try:
        assert [p.offset for p in (await survivor.read("a")).publications] == [1, 2, 3]
        assert (await survivor.append("a", b"4", None, size=10, ttl=60)).offset == 4
    finally:
        await survivor.close()
        simulate_crash_cleanup(crashed)


async def test_sqlite_unclean_shutdown_changes_every_epoch(tmp_path: Path, clock: FakeClock) -> None:
    """Rows not yet written may be lost in a crash, so a reopened file gives streams new epochs:
    a client holding an offset from before is told recovered: false instead of skipping one."""
    crashed = await sqlite_store(tmp_path, clock)
    before = await crashed.append("a", b"1", None, size=10, ttl=60)
    await crashed.sync()
    survivor = await sqlite_store(tmp_path, clock)
    try:
        assert isinstance(survivor, SqliteHistory) and survivor.recovered_from_crash
        after = await survivor.top("a")
        assert after.offset == before.offset and after.epoch != before.epoch
        assert (await survivor.top("never-used")).epoch != (await crashed.top("never-used")).epoch
    finally:
        await survivor.close()
        simulate_crash_cleanup(crashed)
    reopened = await sqlite_store(tmp_path, clock)  # a clean close keeps the epochs
    try:
        assert isinstance(reopened, SqliteHistory) and not reopened.recovered_from_crash
        assert (await reopened.top("a")).epoch == after.epoch
    finally:
        await reopened.close()


async def test_stored_publications_counts_what_is_kept(store: HistoryStore) -> None:
    await append(store, "a", 8, size=5)
    await append(store, "b", 2)
    await store.sync()
    assert store.stored_publications == 7


async def test_append_many_is_appends_in_order(store: HistoryStore) -> None:
    from hubbub.backends.base import Append

    tops = await store.append_many(
        [Append("a", b"1", None, 10, 60), Append("b", b"1", None, 10, 60), Append("a", b"2", b'{"u":1}', 10, 60)]
    )
    assert [t.offset for t in tops] == [1, 1, 2]
    assert tops[0].epoch == tops[2].epoch == (await store.top("a")).epoch
    assert [(p.offset, p.data, p.info) for p in (await store.read("a")).publications] == [
        (1, b"1", None),
        (2, b"2", b'{"u":1}'),
    ]


async def test_sqlite_caches_empty_streams_boundedly(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tops of never-published channels are cached (no thread hop per subscribe), at most
    ABSENT_CACHE_SIZE of them, and a first publication replaces the cached empty top."""
    monkeypatch.setattr(sqlite_module, "ABSENT_CACHE_SIZE", 3)
    store = await sqlite_store(tmp_path, clock)
    try:
        assert isinstance(store, SqliteHistory)
        empty = await store.top("waiting")
        assert empty.offset == 0 and "waiting" in store._absent
        first = await store.append("waiting", b"1", None, size=10, ttl=60)
        assert first == StreamTop(1, empty.epoch)
        assert await store.top("waiting") == first and "waiting" not in store._absent
        for name in ("a", "b", "c", "d"):
            await store.top(name)
        assert list(store._absent) == ["b", "c", "d"]
    finally:
        await store.close()


async def test_read_positions_move_forward_only_per_user_and_channel(store: HistoryStore) -> None:
    """What unread counts derive from: one position per user and channel, never moving back."""
    assert await store.read_positions("alice", ["room", "dm:alice,bob"]) == {"room": 0, "dm:alice,bob": 0}
    assert await store.mark_read("alice", "room", 5) == 5
    assert await store.mark_read("alice", "room", 3) == 5  # an older tab's late report
    assert await store.mark_read("alice", "room", 9) == 9
    assert await store.mark_read("bob", "room", 2) == 2
    assert await store.read_positions("alice", ["room", "other"]) == {"room": 9, "other": 0}
    assert await store.read_positions("bob", ["room"]) == {"room": 2}
    assert await store.read_positions("carol", []) == {}
