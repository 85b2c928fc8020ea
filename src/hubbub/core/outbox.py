"""Per-session outbound queue: coalesced, byte-bounded, flushed in slices.

The fan-out path (DESIGN.md): a publication is encoded once; each subscriber's outbox only
appends a reference to those bytes. The first append in a loop turn marks the outbox dirty;
one `Flusher` callback per turn joins each dirty outbox's messages with "\\n" into one frame
and hands it to the sink in one write. Nothing here awaits, and no task exists per message.

Within one loop turn, messages of one channel go into a shared `TurnBatch`: the first message
of the turn costs one append per subscriber, every further one a single append to the batch.
The batch is closed (frozen) when the flusher runs, and joined once for all its subscribers, so
their transports can share one prebuilt frame. Order is kept per channel, not across channels.

Most fan-outs reach outboxes with nothing else queued (nothing queues when traffic is light).
Such an idle outbox does not queue the batch: it joins the batch's `direct` list, and the
flusher writes the batch to that list's outboxes in one pass (one call per connection instead of
a queue, a dirty mark and a flush). Anything queued to it before that write takes the batch back
into its queue first, so its order is the order things were queued (docs/architecture.md).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Final, Protocol

Callback = Callable[[], None]

# "No limit" as a number: far above any queue, and small enough for a machine word, which
# compiled code compares and subtracts without boxing (sys.maxsize is not: a slow path per call).
UNLIMITED: Final = 1 << 60


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


class DirectSink:
    """A sink with a one-call direct write (WebSocketSink): `writable`, `write` and
    `buffered_bytes` in one. A base class, not a protocol, so that compiled, the outbox's call
    is a native one (no attribute lookup, no boxed result) once per delivery."""

    __slots__ = ("accepting", "transport_empty")

    def __init__(self) -> None:
        # Whether the transport under this sink takes data now (open, not closing): its owner
        # keeps it current, so that a direct write reads this object alone, not its owner too.
        self.accepting = False
        # True only while the transport is known to hold no bytes: set by a complete direct
        # write, cleared by every other write to the transport (which may leave bytes behind).
        self.transport_empty = False

    def write_now(self, payload: bytes) -> int:
        """Write `payload` unless paused: -1 when paused, else the bytes still buffered."""
        raise NotImplementedError


class TurnBatch:
    """The messages one channel published during one loop turn, shared by its subscribers."""

    __slots__ = ("_joined", "closed", "direct", "messages", "size", "written")

    def __init__(self, first: bytes) -> None:
        self.messages = [first]
        self.size = len(first) + 1
        self.closed = False
        self._joined: bytes | None = None
        self.direct: list[Outbox] = []  # idle outboxes the flusher writes this batch to
        self.written = 0  # how many of them it did (a long list takes several slices)

    def add(self, data: bytes) -> None:
        self.messages.append(data)
        self.size += len(data) + 1

    def joined(self) -> bytes:
        """All messages as one newline-separated payload, built once; closes the batch."""
        self.closed = True
        if self._joined is None:
            self._joined = b"\n".join(self.messages)
        return self._joined


Entry = bytes | TurnBatch


class Flusher:
    """Writes the turn's batches to idle outboxes, then flushes dirty outboxes, once per loop
    turn, at most `slice_size` connections per callback.

    Slicing lets reads, pings and handshakes run between slices of a flush to thousands of
    connections instead of blocking the loop for the whole fan-out.
    """

    def __init__(self, call_soon: Callable[[Callback], object], slice_size: int = 512) -> None:
        self._call_soon = call_soon
        self._slice_size = slice_size
        self._dirty: list[Outbox] = []
        self._scheduled = False
        self._last_pending: list[Entry] = []
        self._last_joined = b""
        self._open_batches: list[TurnBatch] = []
        self._direct: deque[TurnBatch] = deque()  # closed batches with idle outboxes to write

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)

    def open_batch(self, first: bytes) -> TurnBatch:
        """A batch for this turn's messages of one channel; the next flush closes it."""
        batch = TurnBatch(first)
        self._open_batches.append(batch)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)
        return batch

    def run(self) -> None:
        self._scheduled = False
        if self._open_batches:
            for open_batch in self._open_batches:
                open_batch.closed = True
                if open_batch.direct:
                    self._direct.append(open_batch)
            self._open_batches = []
        # Queued outboxes first: under load they hold the oldest messages, and an outbox waiting
        # for a direct write that gets another batch joins them, so the direct lists cannot
        # starve them; nothing idle waits long either, as each callback takes at most a slice.
        dirty = self._dirty
        room = self._slice_size
        if len(dirty) > room:
            now = dirty[:room]
            del dirty[:room]
        else:
            now = dirty
            self._dirty = []
        for outbox in now:
            outbox.flush()
        self._last_pending = []  # hold no messages past the turn
        self._last_joined = b""
        if self._direct and room > len(now):
            self._write_direct(room - len(now))
        if (self._dirty or self._direct) and not self._scheduled:  # a write may have marked one
            self._scheduled = True
            self._call_soon(self.run)

    def _write_direct(self, room: int) -> None:
        """Write closed batches to their idle outboxes, oldest batch first, at most `room`."""
        direct = self._direct
        while direct and room > 0:
            batch = direct[0]
            payload = batch.joined()
            outboxes = batch.direct
            start = batch.written
            end = min(len(outboxes), start + room)
            for index in range(start, end):  # no slice copied when the list takes several
                outboxes[index].write_direct(batch, payload)
            room -= end - start
            if end == len(outboxes):
                direct.popleft()
                batch.direct = []
            else:
                batch.written = end

    def joined(self, pending: list[Entry]) -> bytes:
        """The pending entries as one newline-separated payload, shared when possible.

        A lone batch is joined once for all its subscribers. Otherwise consecutive outboxes
        holding the same entries (list equality is a pointer comparison per entry) share the
        bytes too. Shared bytes let the transport reuse one prebuilt frame (docs/benchmarks.md).
        """
        if len(pending) == 1:
            only = pending[0]
            return only if isinstance(only, bytes) else only.joined()
        if pending == self._last_pending:
            return self._last_joined
        joined = b"\n".join(flatten(pending))
        self._last_pending = pending
        self._last_joined = joined
        return joined


def flatten(entries: list[Entry]) -> list[bytes]:
    messages: list[bytes] = []
    for entry in entries:
        if isinstance(entry, bytes):
            messages.append(entry)
        else:
            entry.closed = True
            messages.extend(entry.messages)
    return messages


class Outbox:
    """Messages waiting for one connection, at most `max_bytes` (including the transport buffer).

    Past the limit `on_overflow` runs (the session cuts the slow consumer). Messages pushed
    with `push_latest` are conflated while the transport is backed up: only the newest per key
    is kept, so a slow reader of a live feed gets fresh values instead of a backlog.
    """

    __slots__ = (
        "_budget",
        "_counted",
        "_direct",
        "_direct_sink",
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
        max_bytes: int | None,
        max_batch_bytes: int,
        on_overflow: Callback,
        drops: Counter[str] | None = None,
    ) -> None:
        self._drops: Counter[str] = drops if drops is not None else Counter()
        self._sink = sink
        self._flusher = flusher
        self._pending: list[Entry] = []
        self._pending_bytes = 0  # 0 exactly when nothing is queued: every entry counts its newline
        self._counted = 0  # entries of _pending whose bytes are exact in _pending_bytes
        self._latest: dict[str, bytes] = {}
        self._max_bytes = UNLIMITED if max_bytes is None else max_bytes  # None: never cut
        self._budget = self._max_bytes  # max_bytes minus what the transport held at the last flush
        self._max_batch_bytes = max_batch_bytes
        self._scheduled = False
        self._waiting = False
        self._direct: TurnBatch | None = None  # a batch the flusher writes without queueing it
        # A sink's optional one-call write: direct writes use it, one call per delivery instead of three.
        # Declared, not inferred: inferred, the type is an intersection of `Sink` and `DirectSink`,
        # which mypyc calls by method name (a lookup per delivery) instead of natively.
        self._direct_sink: DirectSink | None = sink if isinstance(sink, DirectSink) else None
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
        if self._direct is not None:
            self._queue_direct()
        self._pending.append(data)
        self._pending_bytes += len(data) + 1
        if not self._scheduled:
            self._scheduled = True
            self._flusher.mark(self)
        if self._pending_bytes > self._budget:
            self._overflow()

    def push_batch(self, batch: TurnBatch) -> None:
        """Queue a channel's batch for this turn; messages added to it later come along."""
        if self.closed:
            self._drops["closed"] += 1
            return
        if self._direct is None:
            # Nothing queued (no bytes counted means no entry, none conflated either): only the
            # outbox itself is read here, not its queue's list and dict, once per delivery.
            if self._pending_bytes == 0 and not self._waiting and batch.size <= self._budget:
                self._direct = batch  # idle: the flusher writes it with the batch's other outboxes
                batch.direct.append(self)
                return
        else:
            self._queue_direct()
        self._pending.append(batch)
        self._pending_bytes += batch.size
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

    def write_direct(self, batch: TurnBatch, payload: bytes) -> None:
        """The flusher's write of a batch this outbox got while idle (`payload` is its joined
        bytes), unless something queued since took the batch into the queue."""
        if self._direct is not batch:  # queued meanwhile, or discarded
            return
        if batch.size <= self._budget and batch.size <= self._max_batch_bytes:
            direct_sink = self._direct_sink
            if direct_sink is not None:
                buffered = direct_sink.write_now(payload)
                if buffered >= 0:
                    self._direct = None
                    self._budget = self._max_bytes - buffered
                    return
            elif (sink := self._sink).writable():
                self._direct = None
                sink.write(payload)
                self._budget = self._max_bytes - sink.buffered_bytes()
                return
        self._queue_direct()  # backed up, over budget or too big for one frame: the queue's rules

    def _queue_direct(self) -> None:
        """Put the batch waiting for a direct write at the head of the queue, counted as if it
        were queued when it opened (its later messages are counted at the next flush)."""
        batch = self._direct
        assert batch is not None
        self._direct = None
        self._pending.append(batch)
        self._pending_bytes += len(batch.messages[0]) + 1
        if not self._scheduled:
            self._scheduled = True
            self._flusher.mark(self)

    def _overflow(self) -> None:
        self._drops["slow_consumer"] += len(flatten(self._pending)) + len(self._latest)
        self.discard()
        self._on_overflow()

    def discard(self) -> None:
        """Drop everything queued and refuse new messages (the connection is going away)."""
        self.closed = True
        self._direct = None
        self._pending = []
        self._latest = {}
        self._pending_bytes = 0
        self._counted = 0

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
        if self._counted < len(pending):
            self._count_batch_growth(pending)
            if self._pending_bytes > self._budget:
                self._overflow()
                return
        if not sink.writable():
            self._wait_for_sink()
            return
        if self._pending_bytes <= self._max_batch_bytes:
            sink.write(self._flusher.joined(pending))
            self._pending = []
            self._pending_bytes = 0
            self._counted = 0
        else:
            self._write_in_batches(sink, flatten(pending))
        self._budget = self._max_bytes - sink.buffered_bytes()

    def _count_batch_growth(self, pending: list[Entry]) -> None:
        """Batches were counted with their first message when queued; add what came later.

        Only entries queued since the last count are visited, so a backed-up reader's growing
        queue costs O(new entries) per flush, not O(queue).
        """
        grown = 0
        for entry in pending[self._counted :]:
            if not isinstance(entry, bytes):
                entry.closed = True
                grown += entry.size - len(entry.messages[0]) - 1
        self._pending_bytes += grown
        self._counted = len(pending)

    def _write_in_batches(self, sink: Sink, pending: list[bytes]) -> None:
        """Frames of at most max_batch_bytes (a single larger message goes alone)."""
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
        self._pending = [*pending[start:]]
        self._counted = len(self._pending)
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
