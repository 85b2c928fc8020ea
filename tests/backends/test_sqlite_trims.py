"""SQLite history trims lazily: a channel's rows past its size are deleted once `trim_step(size)`
more have gathered (a trim per channel per transaction was a third of the writer's time,
docs/benchmarks.md). Reads and the count never show those rows; a clean close trims to size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hubbub.backends.sqlite import TRIM_EVERY, SqliteHistory, trim_step


def in_file(path: Path) -> list[int]:
    """The channel's offsets in the file, as another process would read them."""
    with sqlite3.connect(path) as db:
        query = "SELECT offset FROM publication_log WHERE channel = 'news' ORDER BY offset"
        return [row[0] for row in db.execute(query)]


async def append(store: SqliteHistory, count: int, size: int) -> None:
    for _ in range(count):
        await store.append("news", b'"x"', None, size=size, ttl=3600.0)


def test_the_step_is_an_eighth_of_the_size_and_at_least_the_minimum() -> None:
    assert trim_step(20) == TRIM_EVERY == 16
    assert trim_step(1000) == 125


async def test_rows_past_the_size_wait_for_a_step_but_are_never_read(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = SqliteHistory(str(path))
    await store.open()
    try:
        await append(store, 40, size=20)
        await store.sync()
        # Trims asked at offsets 1 (the first append here), 17 and 33: rows up to 13 are gone.
        assert in_file(path) == list(range(14, 41))
        page = await store.read("news", after=0)
        assert [p.offset for p in page.publications] == list(range(21, 41))
        newest = await store.read("news", after=41, reverse=True)
        assert [p.offset for p in newest.publications] == list(range(40, 20, -1))
        assert store.stored_publications == 20
    finally:
        await store.close()
    assert in_file(path) == list(range(21, 41))  # a clean close trims every channel to its size
    reopened = SqliteHistory(str(path))
    await reopened.open()
    try:
        assert reopened.stored_publications == 20
        assert [p.offset for p in (await reopened.read("news", after=0)).publications] == list(range(21, 41))
        await append(reopened, 1, size=20)  # the first append after a restart trims at once
        await reopened.sync()
        assert in_file(path) == list(range(22, 42)) and reopened.stored_publications == 20
    finally:
        await reopened.close()
