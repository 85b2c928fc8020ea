"""SQLite history keeps rows in the order they were written and finds a channel's through an
index: clustered by channel, every transaction dirtied a page per channel (docs/benchmarks.md).
A file in the first layout is moved into this one when it opens, epochs and rows intact; every
query on the hot paths goes through the index, never through the whole table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hubbub.backends.sqlite import SqliteHistory

FIRST_LAYOUT = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE streams (channel TEXT PRIMARY KEY, epoch TEXT NOT NULL, top INTEGER NOT NULL);
CREATE TABLE publications (
    channel TEXT NOT NULL,
    offset INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    data BLOB NOT NULL,
    info BLOB,
    PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
"""


def write_first_layout(path: Path) -> None:
    """A file as hubbub wrote it before the write-ordered layout, closed cleanly."""
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_LAYOUT)
        db.execute("INSERT INTO meta VALUES ('salt', 'oldsalt'), ('clean', '1')")
        db.execute("INSERT INTO streams VALUES ('news', 'epoch-news', 3), ('chat', 'epoch-chat', 1)")
        db.executemany(
            "INSERT INTO publications VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("news", 1, now, now + 3600, b'"one"', None),
                ("news", 2, now, now + 3600, b'"two"', b'{"user":"ann"}'),
                ("news", 3, now, now + 3600, b'"three"', None),
                ("chat", 1, now, now + 3600, b'"hi"', None),
            ],
        )


async def test_a_file_in_the_first_layout_keeps_its_rows_epochs_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    write_first_layout(path)
    store = SqliteHistory(str(path))
    await store.open()
    try:
        assert not store.recovered_from_crash
        news = await store.read("news")
        assert [(p.offset, p.data, p.info) for p in news.publications] == [
            (1, b'"one"', None),
            (2, b'"two"', b'{"user":"ann"}'),
            (3, b'"three"', None),
        ]
        assert (news.top.offset, news.top.epoch) == (3, "epoch-news")
        assert [p.data for p in (await store.read("chat")).publications] == [b'"hi"']
        assert store.stored_publications == 4
        top = await store.append("news", b'"four"', None, size=100, ttl=3600.0)
        assert (top.offset, top.epoch) == (4, "epoch-news")
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "publications" not in tables and "publication_log" in tables
        assert db.execute("SELECT count(*) FROM publication_log").fetchone()[0] == 5
    again = SqliteHistory(str(path))  # opening the moved file again moves nothing twice
    await again.open()
    try:
        assert [p.offset for p in (await again.read("news")).publications] == [1, 2, 3, 4]
    finally:
        await again.close()


def plan(db: sqlite3.Connection, query: str, params: tuple[object, ...]) -> str:
    return " ".join(str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + query, params))


async def test_reads_and_trims_go_through_the_index(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    store = SqliteHistory(str(path))
    await store.open()
    try:
        for _ in range(5):
            await store.append("news", b'"x"', None, size=100, ttl=3600.0)
        await store.sync()
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        now = time.time()
        reads = [
            (
                "SELECT offset, data FROM publication_log WHERE channel = ? AND expires > ? ORDER BY offset ASC",
                ("news", now),
            ),
            (
                "SELECT offset, data FROM publication_log WHERE channel = ? AND expires > ? AND offset > ?"
                " ORDER BY offset DESC LIMIT ?",
                ("news", now, 2, 10),
            ),
            ("DELETE FROM publication_log WHERE channel = ? AND (offset <= ? OR expires <= ?)", ("news", 1, now)),
        ]
        for query, params in reads:
            chosen = plan(db, query, params)
            assert "USING INDEX publication_log_position" in chosen, (query, chosen)
            assert "TEMP B-TREE" not in chosen, (query, chosen)  # index order, no sort
