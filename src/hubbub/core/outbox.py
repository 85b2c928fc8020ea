"""Per-session outbound queue: coalesced, byte-bounded, flushed in slices.

The fan-out path (DESIGN.md): a publication is encoded once; each subscriber's outbox only
appends a reference to those bytes. The first append in a loop turn marks the outbox dirty;
one `Flusher` callback per turn joins each dirty outbox's messages with "\\n" into one frame
and hands it to the sink in one write. Nothing here awaits, and no task exists per message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], None]


class Sink(Protocol):
    """The transport side of a session (a WebSocket connection, or a recorder in tests)."""

    def write(self, payload: bytes) -> None:
        """Send one text frame now (the caller checked `writable`)."""

    def writable(self) -> bool:
        """False while the transport's write buffer is above its high-water mark."""

    def buffered_bytes(self) -> int:
        """Bytes accepted by `write` but not yet handed to the kernel."""

    def when_writable(self, callback: Callback) -> None:
        """Call `callback` once, when the transport can take writes again (or closes)."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with this close code; returns at once."""


class Flusher:
    """Runs dirty outboxes' flushes once per loop turn, at most `slice_size` per callback.

    Slicing lets reads, pings and handshakes run between slices of a flush to thousands of
    connections instead of blocking the loop for the whole fan-out.
    """

    def __init__(self, call_soon: Callable[[Callback], object], slice_size: int = 512) -> None:
        self._call_soon = call_soon
        self._slice_size = slice_size
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)

    def run(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        if len(dirty) > self._slice_size:
            batch = dirty[: self._slice_size]
            del dirty[: self._slice_size]
            self._scheduled = True
            self._call_soon(self.run)
        else:
            batch = dirty
            self._dirty = []
        for outbox in batch:
            outbox.flush()


class Outbox:
    """Messages waiting for one connection, at most `max_bytes` (including the transport buffer).

    Past the limit `on_overflow` runs (the session cuts the slow consumer). Messages pushed
    with `push_latest` are conflated while the transport is backed up: only the newest per key
    is kept, so a slow reader of a live feed gets fresh values instead of a backlog.
    """

    __slots__ = (
        "_budget",
        "_drops",
        "_flusher",
        "_latest",
        "_max_batch_bytes",
        "_max_bytes",
        "_on_overflow",
        "_pending",
        "_pending_bytes",
        "_scheduled",
        "_sink",
        "_waiting",
        "closed",
    )

    def __init__(
        self,
        sink: Sink,
        flusher: Flusher,
        *,
        max_bytes: int,
        max_batch_bytes: int,
        on_overflow: Callback,
        drops: Counter[str] | None = None,
    ) -> None:
        self._drops: Counter[str] = drops if drops is not None else Counter()
        self._sink = sink
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._latest: dict[str, bytes] = {}
        self._max_bytes = max_bytes
        self._budget = max_bytes  # max_bytes minus what the transport held at the last flush
        self._max_batch_bytes = max_batch_bytes
        self._scheduled = False
        self._waiting = False
        self._on_overflow = on_overflow
        self.closed = False

    @property
    def queued_bytes(self) -> int:
        return self._pending_bytes

    def push(self, data: bytes) -> None:
        """Queue one encoded message (no newline inside). The hot path: keep it tiny."""
        if self.closed:
            self._drops["closed"] += 1
            return
        self._pending.append(data)
        self._pending_bytes += len(data) + 1
        if not self._scheduled:
            self._scheduled = True
            self._flusher.mark(self)
        if self._pending_bytes > self._budget:
            self._overflow()

    def push_latest(self, key: str, data: bytes) -> None:
        """Queue a conflatable message: while backed up, it replaces the older one of `key`."""
        if not self._waiting:
            self.push(data)
            return
        if self.closed:
            self._drops["closed"] += 1
            return
        previous = self._latest.get(key)
        if previous is not None:
            self._drops["conflated"] += 1
            self._pending_bytes -= len(previous) + 1
        self._latest[key] = data
        self._pending_bytes += len(data) + 1
        if self._pending_bytes > self._budget:
            self._overflow()

    def _overflow(self) -> None:
        self._drops["slow_consumer"] += len(self._pending) + len(self._latest)
        self.discard()
        self._on_overflow()

    def discard(self) -> None:
        """Drop everything queued and refuse new messages (the connection is going away)."""
        self.closed = True
        self._pending = []
        self._latest = {}
        self._pending_bytes = 0

    def flush(self) -> None:
        """Write queued messages as frames of at most max_batch_bytes, while the sink takes them."""
        self._scheduled = False
        if self.closed:
            return
        sink = self._sink
        if self._latest:
            self._pending.extend(self._latest.values())
            self._latest = {}
        pending = self._pending
        if not pending:
            return
        if not sink.writable():
            self._wait_for_sink()
            return
        if self._pending_bytes <= self._max_batch_bytes:
            sink.write(b"\n".join(pending))
            self._pending = []
            self._pending_bytes = 0
        else:
            self._write_in_batches(sink, pending)
        self._budget = self._max_bytes - sink.buffered_bytes()

    def _write_in_batches(self, sink: Sink, pending: list[bytes]) -> None:
        start = 0
        count = len(pending)
        while start < count:
            end = start
            size = 0
            while end < count and (end == start or size + len(pending[end]) + 1 <= self._max_batch_bytes):
                size += len(pending[end]) + 1
                end += 1
            sink.write(b"\n".join(pending[start:end]))
            self._pending_bytes -= size
            start = end
            if start < count and not sink.writable():
                break
        self._pending = pending[start:]
        if self._pending:
            self._wait_for_sink()

    def _wait_for_sink(self) -> None:
        if not self._waiting:
            self._waiting = True
            self._sink.when_writable(self._resume)

    def _resume(self) -> None:
        self._waiting = False
        if not self.closed and not self._scheduled and (self._pending or self._latest):
            self._scheduled = True
            self._flusher.mark(self)
