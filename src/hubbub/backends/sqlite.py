"""Durable single-node history in SQLite, written behind in group commits.

Offsets are assigned in memory (each channel's top is cached once loaded), so `append` costs
no disk round trip and a burst of publications fans out in one loop turn, where the outbox
can coalesce it. Appended rows gather for up to `commit_interval` seconds, then one dedicated
thread writes them in one transaction. A read merges the file's rows with those still
gathering, so it sees every publication appended before it without forcing a commit (the
writer's queue is FIFO: what was handed over before the read is in the file when it runs).
`sync()` waits until they are on disk.

A crash can lose the last unwritten rows, whose offsets subscribers may have seen. So the file
records a clean close; when it opens after an unclean one, every stream gets a new epoch and
clients that try to recover are told `recovered: false` instead of silently skipping offsets.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hubbub.backends.base import Append, HistoryPage, StoredPublication, StreamTop
from hubbub.backends.streams import Clock, epoch_for, new_salt

log = logging.getLogger("hubbub.history.sqlite")

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
CREATE TABLE IF NOT EXISTS publication_log (
    seq INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    offset INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    data BLOB NOT NULL,
    info BLOB
);
CREATE INDEX IF NOT EXISTS publication_log_position ON publication_log (channel, offset, expires);
CREATE TABLE IF NOT EXISTS read_positions (
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (user, channel)
) WITHOUT ROWID;
"""

Row = tuple[str, int, float, float, bytes, bytes | None]

# Rows are stored in the order they were written (`seq`), found through the small
# (channel, offset, expires) index. Clustered by channel, as the first layout was, every
# transaction dirtied one page per channel it touched: about 30 us of the writer per row at
# 10,000 publications/s over 1,000 channels, against 10 us now (docs/benchmarks.md). A file
# in that layout is moved into this one when it opens.
_OLD_LAYOUT = "publications"


ABSENT_CACHE_SIZE = 10_000  # ~150 bytes each: about 1.5 MB at most
# Pending rows past either bound go to the writer at once, whatever the commit interval.
MAX_PENDING_ROWS = 5_000
MAX_PENDING_BYTES = 4 * 1024 * 1024
# A channel's rows past its history size are deleted once this many more have gathered (at least
# TRIM_EVERY, or an eighth of the size): a trim per channel per transaction was a third of the
# writer's time. Reads never return them (they stop at the newest `size`); the file holds at most
# that many more per channel, and a clean close trims every channel to its size.
TRIM_EVERY = 16


def trim_step(size: int) -> int:
    return max(TRIM_EVERY, size // 8)


class SqliteHistory:
    """History in a SQLite file; survives clean restarts with the same epochs."""

    announces = False  # one process: the publisher broadcasts, its channel lock keeps the order

    def __init__(self, path: str, clock: Clock = time.time, commit_interval: float = 0.0) -> None:
        self._path = path
        self._clock = clock
        # A transaction costs about what a hundred rows cost: one per loop turn made the writer
        # thread a third of the server's CPU at 2,000 publications/s (docs/benchmarks.md).
        self._commit_interval = commit_interval
        self._submit_timer: asyncio.TimerHandle | None = None
        self._pending_bytes = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubbub-sqlite")
        self._db: sqlite3.Connection | None = None
        self._salt = ""
        self._tops: dict[str, StreamTop] = {}  # channels that have publications
        # Channels read but never published to (subscribers waiting for a first message): a
        # bounded cache, so a connect storm does not cost a thread round trip per subscribe.
        self._absent: OrderedDict[str, StreamTop] = OrderedDict()
        self._rows: list[Row] = []  # appended, not yet handed to the writer thread
        self._touched: dict[str, StreamTop] = {}  # channel -> its top, for the streams table
        self._trims: dict[str, int] = {}  # channel -> the newest offset its trim deletes
        self._sizes: dict[str, int] = {}  # channel -> its history size, from its last append
        self._floors: dict[str, int] = {}  # channel -> the newest offset its last trim deletes
        self._submit_scheduled = False
        self._write_failed = False
        self._closed = False
        self._count = 0
        self.recovered_from_crash = False

    # ---- executor plumbing --------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("history store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None, "call open() first"
        return self._db

    # ---- open and close -----------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)
        if self.recovered_from_crash:
            log.warning("%s was not closed cleanly: history epochs changed, clients will reload", self._path)

    def _open(self) -> None:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        with db:
            db.execute("BEGIN IMMEDIATE")
            clean = db.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
            salt = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
            if salt is None or (clean is not None and clean[0] != "1"):
                self.recovered_from_crash = salt is not None
                self._salt = new_salt()
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('salt', ?)", (self._salt,))
                channels = [row[0] for row in db.execute("SELECT channel FROM streams")]
                db.executemany(
                    "UPDATE streams SET epoch = ? WHERE channel = ?",
                    [(epoch_for(self._salt, channel), channel) for channel in channels],
                )
            else:
                self._salt = salt[0]
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '0')")
            self._migrate(db)
            self._count = db.execute("SELECT count(*) FROM publication_log").fetchone()[0]
        self._db = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Move the rows of a file written in the first layout (clustered by channel)."""
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_OLD_LAYOUT,)).fetchone()
        if old is None:
            return
        moved = db.execute(
            "INSERT INTO publication_log (channel, offset, created, expires, data, info)"
            f" SELECT channel, offset, created, expires, data, info FROM {_OLD_LAYOUT}"
            " ORDER BY created, channel, offset"
        ).rowcount
        db.execute(f"DROP TABLE {_OLD_LAYOUT}")
        log.info("%s: moved %d publications to the write-ordered layout", self._path, moved)

    @property
    def stored_publications(self) -> int:
        """Rows in the file, less those past their channel's size that a lazy trim keeps yet."""
        untrimmed = 0
        for channel, size in self._sizes.items():
            untrimmed += max(0, self._tops[channel].offset - size - max(self._floors[channel], 0))
        return self._count - untrimmed

    def _close(self) -> None:
        if self._db is None:
            return
        if not self._write_failed:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '1')")
        self._db.close()
        self._db = None

    async def close(self) -> None:
        """Write what is pending, mark the file cleanly closed, stop the thread. Idempotent."""
        if self._closed:
            return
        self._trim_all()
        self._submit()
        await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)

    # ---- writes -------------------------------------------------------------------------

    async def append(self, channel: str, data: bytes, info: bytes | None, *, size: int, ttl: float) -> StreamTop:
        top = self._tops.get(channel) or self._absent.pop(channel, None)
        if top is None:
            loaded = await self._run(self._read_top, channel)
            top = self._tops.setdefault(channel, loaded)  # another append may have loaded it meanwhile
        now = self._clock()
        top = StreamTop(top.offset + 1, top.epoch)
        self._tops[channel] = top
        self._rows.append((channel, top.offset, now, now + ttl, data, info))
        self._touched[channel] = top
        self._sizes[channel] = size
        # The first append here trims at once: the file may hold rows of an earlier run.
        floor = self._floors.get(channel)
        if floor is None or top.offset - size - floor >= trim_step(size):
            self._trims[channel] = self._floors[channel] = top.offset - size
        self._pending_bytes += len(data) + (len(info) if info else 0)
        if len(self._rows) >= MAX_PENDING_ROWS or self._pending_bytes >= MAX_PENDING_BYTES:
            self._submit()
        elif not self._submit_scheduled:
            self._submit_scheduled = True
            loop = asyncio.get_running_loop()
            if self._commit_interval > 0:
                self._submit_timer = loop.call_later(self._commit_interval, self._submit)
            else:
                loop.call_soon(self._submit)
        return top

    async def append_many(self, items: list[Append]) -> list[StreamTop]:
        """Offsets are assigned in memory and rows written behind: already one operation."""
        return [await self.append(i.channel, i.data, i.info, size=i.size, ttl=i.ttl) for i in items]

    def _submit(self) -> None:
        """Hand pending rows to the writer thread (FIFO: before any read submitted later)."""
        self._submit_scheduled = False
        if self._submit_timer is not None:
            self._submit_timer.cancel()
            self._submit_timer = None
        if not (self._rows or self._trims) or self._closed:
            return
        rows, touched, trims = self._rows, self._touched, self._trims
        self._rows, self._touched, self._trims = [], {}, {}
        self._pending_bytes = 0
        self._executor.submit(self._write, rows, touched, trims)

    def _trim_all(self) -> None:
        """Ask every channel whose rows passed its size since its last trim for one (on close)."""
        for channel, size in self._sizes.items():
            floor = self._tops[channel].offset - size
            if floor > self._floors[channel]:
                self._trims[channel] = self._floors[channel] = floor

    def _write(self, rows: list[Row], touched: dict[str, StreamTop], trims: dict[str, int]) -> None:
        db = self._connection()
        now = self._clock()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO publication_log (channel, offset, created, expires, data, info)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                # One C-level loop per statement (executemany), not a Python loop: fewer GIL
                # hand-overs between this thread and the event loop.
                db.executemany(
                    "INSERT INTO streams (channel, epoch, top) VALUES (?, ?, ?)"
                    " ON CONFLICT (channel) DO UPDATE SET top = excluded.top",
                    [(channel, top.epoch, top.offset) for channel, top in touched.items()],
                )
                deleted = db.executemany(
                    "DELETE FROM publication_log WHERE channel = ? AND (offset <= ? OR expires <= ?)",
                    [(channel, floor, now) for channel, floor in trims.items()],
                ).rowcount
            self._count += len(rows) - deleted
        except sqlite3.Error:
            self._write_failed = True  # the next open rotates epochs: clients will reload
            log.exception("writing %d publications to %s failed", len(rows), self._path)

    async def sync(self) -> None:
        """Return once every publication appended so far is committed to the file."""
        self._submit()
        await self._run(lambda: None)

    # ---- reads --------------------------------------------------------------------------

    def _read_top(self, channel: str) -> StreamTop:
        row = self._connection().execute("SELECT top, epoch FROM streams WHERE channel = ?", (channel,)).fetchone()
        if row is not None:
            return StreamTop(row[0], row[1])
        return StreamTop(0, epoch_for(self._salt, channel))

    def _read(
        self, channel: str, after: int | None, limit: int | None, reverse: bool, floor: int | None = None
    ) -> HistoryPage:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            top = self._read_top(channel)
            query = "SELECT offset, data, info, created FROM publication_log WHERE channel = ? AND expires > ?"
            params: list[Any] = [channel, self._clock()]
            if after is not None:
                query += " AND offset < ?" if reverse else " AND offset > ?"
                params.append(after)
            if floor is not None:  # rows past the size a lazy trim has not deleted yet
                query += " AND offset > ?"
                params.append(floor)
            query += " ORDER BY offset DESC" if reverse else " ORDER BY offset ASC"
            if limit is not None:
                query += " LIMIT ?"
                params.append(limit)
            rows = db.execute(query, params).fetchall()
        return HistoryPage([StoredPublication(row[0], bytes(row[1]), row[2], row[3]) for row in rows], top)

    async def read(
        self, channel: str, *, after: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        """The file's rows and this channel's rows still gathering, merged; no commit is forced.

        A reconnect storm reads history once per subscriber: committing before each read cost a
        transaction per read, which the commit interval is there to avoid. Rows handed to the
        writer before this read are in the file when the read runs (its queue is FIFO); rows
        gathering now are newer than all of them.
        """
        # One moment's view: the rows gathering now and the top they lead to. Appends made while
        # the file is read are not in this page, so its top must not count them either (a top
        # ahead of the page's rows made the hub drop those publications as already recovered).
        pending = [row for row in self._rows if row[0] == channel]
        known_top = self._tops.get(channel)
        size = self._sizes.get(channel)
        # Rows past the size may still be in the file (trims are lazy): the newest `size` only.
        floor = known_top.offset - size if known_top is not None and size is not None else None
        page = await self._run(self._read, channel, after, limit, reverse, floor)
        top = known_top if known_top is not None else page.top  # the file's top lags what is gathering
        if not pending:
            return HistoryPage(page.publications, top)
        now = self._clock()
        newer = [
            StoredPublication(offset, data, info, created)
            for _, offset, created, expires, data, info in pending
            if expires > now
            and (floor is None or offset > floor)
            and (after is None or (offset < after if reverse else offset > after))
        ]
        publications = newer[::-1] + page.publications if reverse else page.publications + newer
        return HistoryPage(publications[:limit] if limit is not None else publications, top)

    async def top(self, channel: str) -> StreamTop:
        top = self._tops.get(channel) or self._absent.get(channel)
        if top is not None:
            return top
        self._submit()
        loaded = await self._run(self._read_top, channel)
        if loaded.offset > 0:
            loaded = self._tops.setdefault(channel, loaded)
        elif channel not in self._tops:  # names from clients: bounded, oldest forgotten first
            self._absent[channel] = loaded
            if len(self._absent) > ABSENT_CACHE_SIZE:
                self._absent.popitem(last=False)
        return loaded

    def _channels(self) -> list[str]:
        return [row[0] for row in self._connection().execute("SELECT channel FROM streams ORDER BY channel")]

    async def mark_read(self, user: str, channel: str, offset: int) -> int:
        return await self._run(self._mark_read, user, channel, offset)

    def _mark_read(self, user: str, channel: str, offset: int) -> int:
        db = self._connection()
        with db:
            db.execute(
                "INSERT INTO read_positions (user, channel, offset) VALUES (?, ?, ?)"
                " ON CONFLICT (user, channel) DO UPDATE SET offset = max(offset, excluded.offset)",
                (user, channel, offset),
            )
            row = db.execute(
                "SELECT offset FROM read_positions WHERE user = ? AND channel = ?", (user, channel)
            ).fetchone()
        return int(row[0])

    async def read_positions(self, user: str, channels: list[str]) -> dict[str, int]:
        return await self._run(self._read_positions, user, channels)

    def _read_positions(self, user: str, channels: list[str]) -> dict[str, int]:
        positions = dict.fromkeys(channels, 0)
        db = self._connection()
        for channel in channels:
            row = db.execute(
                "SELECT offset FROM read_positions WHERE user = ? AND channel = ?", (user, channel)
            ).fetchone()
            if row is not None:
                positions[channel] = int(row[0])
        return positions

    async def channels(self) -> list[str]:
        self._submit()
        return await self._run(self._channels)
