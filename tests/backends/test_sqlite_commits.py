"""SQLite history commits appended publications together, every `history_commit_interval`:
a transaction costs about what a hundred rows cost (docs/benchmarks.md). Reads merge the rows
still gathering (the contract suite runs a gathering store too); sync and close commit; the wait
is bounded in time, rows and bytes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.backends import sqlite as sqlite_module
from hubbub.backends.sqlite import SqliteHistory
from tests.conftest import StartServer


def committed(path: Path) -> int:
    """Publications in the file, as another process would read it."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM publication_log").fetchone()[0])


class WatchedHistory(SqliteHistory):
    """The real store, telling the test each time its writer thread committed a transaction."""

    def __init__(self, path: str, commit_interval: float) -> None:
        super().__init__(path, commit_interval=commit_interval)
        self.commits: asyncio.Queue[int] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def _write(
        self, rows: list[sqlite_module.Row], touched: dict[str, sqlite_module.StreamTop], trims: dict[str, int]
    ) -> None:
        super()._write(rows, touched, trims)
        self._loop.call_soon_threadsafe(self.commits.put_nowait, len(rows))


@pytest.fixture
async def slow_store(tmp_path: Path) -> AsyncIterator[WatchedHistory]:
    """A store whose interval never ends within a test: only the other triggers commit."""
    store = WatchedHistory(str(tmp_path / "history.db"), commit_interval=3600.0)
    await store.open()
    yield store
    await store.close()


async def append(store: SqliteHistory, count: int, data: bytes = b'"x"') -> None:
    for _ in range(count):
        await store.append("news", data, None, size=100_000, ttl=3600.0)


async def test_appends_wait_for_the_interval_but_every_read_sees_them(
    slow_store: WatchedHistory, tmp_path: Path
) -> None:
    path = tmp_path / "history.db"
    await append(slow_store, 3)
    await asyncio.sleep(0)  # a loop turn: the old per-turn commit would have been handed over now
    await slow_store._run(lambda: None)  # and, the writer's queue being FIFO, written by now
    assert committed(path) == 0 and slow_store.commits.empty()  # gathering: nothing written yet
    page = await slow_store.read("news", after=0)
    assert [p.offset for p in page.publications] == [1, 2, 3] and page.top.offset == 3
    assert committed(path) == 0  # merged from memory: a read forces no commit
    await slow_store.sync()
    assert committed(path) == 3
    await append(slow_store, 2)  # two in the file's rows, two gathering: one ordered page
    assert [p.offset for p in (await slow_store.read("news", after=1)).publications] == [2, 3, 4, 5]
    assert [p.offset for p in (await slow_store.read("news", after=5, reverse=True, limit=3)).publications] == [4, 3, 2]
    assert [p.offset for p in (await slow_store.read("news", after=2, limit=2)).publications] == [3, 4]
    assert committed(path) == 3


async def test_the_interval_commits_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = WatchedHistory(str(path), commit_interval=0.05)
    await store.open()
    try:
        await append(store, 2)
        assert committed(path) == 0
        assert await asyncio.wait_for(store.commits.get(), 5) == 2  # no read, no sync: the interval
        assert committed(path) == 2
    finally:
        await store.close()


async def test_pending_rows_and_bytes_are_bounded(
    slow_store: WatchedHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.db"
    monkeypatch.setattr(sqlite_module, "MAX_PENDING_ROWS", 10)
    await append(slow_store, 9)
    assert slow_store.commits.empty()
    await append(slow_store, 1)  # the tenth: written without a read, a sync or the interval
    assert await asyncio.wait_for(slow_store.commits.get(), 5) == 10
    monkeypatch.setattr(sqlite_module, "MAX_PENDING_BYTES", 4096)
    await append(slow_store, 2, b'"%s"' % (b"x" * 2048))
    assert await asyncio.wait_for(slow_store.commits.get(), 5) == 2
    assert committed(path) == 12


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = SqliteHistory(str(path), commit_interval=3600.0)
    await store.open()
    await append(store, 5)
    await store.close()
    assert committed(path) == 5
    again = SqliteHistory(str(path))
    await again.open()
    try:
        assert again.recovered_from_crash is False
        assert (await again.top("news")).offset == 5
    finally:
        await again.close()


async def test_the_setting_reaches_the_store(start_server: StartServer) -> None:
    server = await start_server(history_commit_interval=3600.0)
    assert server.hub is not None
    store = server.hub.history_store
    assert isinstance(store, SqliteHistory)
    assert store._commit_interval == 3600.0
    assert server.settings.history_path is not None
    await server.publish("news", 1)  # the API's publish is durable: it does not wait for the interval
    assert committed(Path(server.settings.history_path)) == 1


async def test_a_read_applies_the_trim_still_gathering(slow_store: WatchedHistory) -> None:
    for _ in range(5):
        await slow_store.append("news", b"1", None, size=3, ttl=3600.0)
    await slow_store.sync()  # the file keeps 3, 4, 5
    for _ in range(2):
        await slow_store.append("news", b"1", None, size=3, ttl=3600.0)
    page = await slow_store.read("news")
    assert [p.offset for p in page.publications] == [5, 6, 7] and page.top.offset == 7
    assert [p.offset for p in (await slow_store.read("news", reverse=True, limit=2)).publications] == [7, 6]


@pytest.mark.parametrize("interval", [0.0, 3600.0])
async def test_a_read_is_one_moment_even_when_appends_follow_it(tmp_path: Path, interval: float) -> None:
    """Its top and its publications agree: a top counting appends made while the file was read
    made the hub drop those publications as recovered (a client test caught it, 4 runs in 10)."""
    store = SqliteHistory(str(tmp_path / "history.db"), commit_interval=interval)
    await store.open()
    try:
        await append(store, 3)
        reading = asyncio.ensure_future(store.read("news", after=0))
        await asyncio.sleep(0)  # one loop turn: the read has taken its view and waits for the file
        await append(store, 2)
        page = await reading
        assert [p.offset for p in page.publications] == [1, 2, 3] and page.top.offset == 3
    finally:
        await store.close()
