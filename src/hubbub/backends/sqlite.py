"""Durable single-node history in SQLite.

All database work runs on one dedicated thread, so the event loop never blocks on disk and
appends are applied in call order (the HistoryStore ordering guarantee). Each append is its
own transaction: when `append` returns, the publication is on disk (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hubbub.backends.base import HistoryPage, StoredPublication, StreamTop
from hubbub.backends.memory import Clock, epoch_for, new_salt

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    channel TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    top INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS publications (
    channel TEXT NOT NULL,
    offset INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    data BLOB NOT NULL,
    info BLOB,
    PRIMARY KEY (channel, offset)
) WITHOUT ROWID;
"""


class SqliteHistory:
    """History in a SQLite file; survives restarts with the same epochs."""

    def __init__(self, path: str, clock: Clock = time.time) -> None:
        self._path = path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubbub-sqlite")
        self._db: sqlite3.Connection | None = None
        self._salt = ""
        self._closed = False

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        # The salt lives as long as the file: same epochs after a restart, new ones for a new file.
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', ?)", (new_salt(),))
        self._salt = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]
        self._db = db

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("history store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._open()
        assert self._db is not None
        return self._db

    def _top(self, db: sqlite3.Connection, channel: str, create: bool) -> StreamTop:
        row = db.execute("SELECT top, epoch FROM streams WHERE channel = ?", (channel,)).fetchone()
        if row is not None:
            return StreamTop(row[0], row[1])
        top = StreamTop(0, epoch_for(self._salt, channel))
        if create:
            db.execute("INSERT INTO streams (channel, epoch, top) VALUES (?, ?, 0)", (channel, top.epoch))
        return top

    def _append(self, channel: str, data: bytes, info: bytes | None, size: int, ttl: float) -> StreamTop:
        db = self._connection()
        now = self._clock()
        with db:
            db.execute("BEGIN IMMEDIATE")
            top = self._top(db, channel, create=True)
            offset = top.offset + 1
            db.execute("UPDATE streams SET top = ? WHERE channel = ?", (offset, channel))
            db.execute(
                "INSERT INTO publications (channel, offset, created, expires, data, info) VALUES (?, ?, ?, ?, ?, ?)",
                (channel, offset, now, now + ttl, data, info),
            )
            db.execute(
                "DELETE FROM publications WHERE channel = ? AND (offset <= ? OR expires <= ?)",
                (channel, offset - size, now),
            )
        return StreamTop(offset, top.epoch)

    async def append(self, channel: str, data: bytes, info: bytes | None, *, size: int, ttl: float) -> StreamTop:
        return await self._run(self._append, channel, data, info, size, ttl)

    def _read(self, channel: str, after: int | None, limit: int | None, reverse: bool) -> HistoryPage:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            top = self._top(db, channel, create=False)
            query = "SELECT offset, data, info FROM publications WHERE channel = ? AND expires > ?"
            params: list[Any] = [channel, self._clock()]
            if after is not None:
                query += " AND offset < ?" if reverse else " AND offset > ?"
                params.append(after)
            query += " ORDER BY offset DESC" if reverse else " ORDER BY offset ASC"
            if limit is not None:
                query += " LIMIT ?"
                params.append(limit)
            rows = db.execute(query, params).fetchall()
        return HistoryPage([StoredPublication(row[0], bytes(row[1]), row[2]) for row in rows], top)

    async def read(
        self, channel: str, *, after: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        return await self._run(self._read, channel, after, limit, reverse)

    def _get_top(self, channel: str) -> StreamTop:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            return self._top(db, channel, create=False)

    async def top(self, channel: str) -> StreamTop:
        return await self._run(self._get_top, channel)

    def _channels(self) -> list[str]:
        rows = self._connection().execute("SELECT channel FROM streams ORDER BY channel").fetchall()
        return [row[0] for row in rows]

    async def channels(self) -> list[str]:
        return await self._run(self._channels)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)
