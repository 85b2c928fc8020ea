"""Zero-setup backends for one process: everything lives in this process's memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hubbub.backends.base import Append, BrokerHandler, HistoryPage, StoredPublication, StreamTop
from hubbub.backends.streams import Clock, epoch_for, new_salt


class MemoryBroker:
    """Delivers to the local hub synchronously: one node, nothing to cross."""

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None

    def set_handler(self, handler: BrokerHandler) -> None:
        self._handler = handler

    @property
    def healthy(self) -> bool:
        return True

    async def open(self) -> None:
        """Nothing to connect to."""

    async def publish(self, channel: str, offset: int | None, frame: bytes) -> None:
        if self._handler is not None:
            self._handler.on_channel_message(channel, offset, frame)

    async def publish_many(self, messages: list[tuple[str, int | None, bytes]]) -> None:
        for channel, offset, frame in messages:
            await self.publish(channel, offset, frame)

    async def publish_control(self, message: bytes) -> None:
        if self._handler is not None:
            self._handler.on_control(message)

    async def subscribe(self, channel: str) -> None:
        """Every channel reaches the only node; nothing to do."""

    async def unsubscribe(self, channel: str) -> None:
        """See subscribe."""

    def resubscribe(self, reason: str) -> bool:
        """In-process delivery cannot go deaf; nothing to do."""
        return False

    async def close(self) -> None:
        self._handler = None


@dataclass
class _Stream:
    epoch: str
    offset: int = 0
    ttl: float = 0.0
    entries: deque[tuple[float, StoredPublication]] = field(default_factory=deque)


class MemoryHistory:
    """History kept in a dict of deques; lost on restart (the epoch then changes)."""

    announces = False  # one process: the publisher broadcasts, its channel lock keeps the order

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._salt = new_salt()  # per process: a restart loses history, so epochs change
        self._streams: dict[str, _Stream] = {}
        self._count = 0
        self._read: dict[tuple[str, str], int] = {}  # (user, channel) -> offset read up to

    async def open(self) -> None:
        """Nothing to load: memory history starts empty (and so with new epochs)."""

    async def mark_read(self, user: str, channel: str, offset: int) -> int:
        kept = max(self._read.get((user, channel), 0), offset)
        self._read[(user, channel)] = kept
        return kept

    async def read_positions(self, user: str, channels: list[str]) -> dict[str, int]:
        return {channel: self._read.get((user, channel), 0) for channel in channels}

    @property
    def stored_publications(self) -> int:
        return self._count

    def _stream(self, channel: str) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream(epoch=epoch_for(self._salt, channel))
        return stream

    def _expire(self, stream: _Stream) -> None:
        deadline = self._clock() - stream.ttl
        entries = stream.entries
        while entries and entries[0][0] <= deadline:
            entries.popleft()
            self._count -= 1

    async def append(self, channel: str, data: bytes, info: bytes | None, *, size: int, ttl: float) -> StreamTop:
        stream = self._stream(channel)
        stream.offset += 1
        stream.ttl = ttl
        now = self._clock()
        stream.entries.append((now, StoredPublication(stream.offset, data, info, now)))
        self._count += 1
        while len(stream.entries) > size:
            stream.entries.popleft()
            self._count -= 1
        self._expire(stream)
        return StreamTop(stream.offset, stream.epoch)

    async def append_many(self, items: list[Append]) -> list[StreamTop]:
        return [await self.append(i.channel, i.data, i.info, size=i.size, ttl=i.ttl) for i in items]

    async def read(
        self, channel: str, *, after: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        stream = self._streams.get(channel)
        if stream is None:
            return HistoryPage([], await self.top(channel))
        self._expire(stream)
        publications = [entry for _, entry in stream.entries]
        if reverse:
            publications.reverse()
            if after is not None:
                publications = [p for p in publications if p.offset < after]
        elif after is not None:
            publications = [p for p in publications if p.offset > after]
        if limit is not None:
            publications = publications[:limit]
        return HistoryPage(publications, StreamTop(stream.offset, stream.epoch))

    async def top(self, channel: str) -> StreamTop:
        stream = self._streams.get(channel)
        if stream is None:
            return StreamTop(0, epoch_for(self._salt, channel))
        return StreamTop(stream.offset, stream.epoch)

    async def channels(self) -> list[str]:
        return list(self._streams)

    async def sync(self) -> None:
        """Memory is as durable as it gets."""

    async def close(self) -> None:
        """Nothing to flush."""


class MemoryPresence:
    """Presence for one process: entries go when their connection unsubscribes or closes."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, bytes]] = {}

    async def open(self) -> None:
        """Nothing to connect to."""

    async def add(self, channel: str, client_id: str, info: bytes) -> None:
        self._channels.setdefault(channel, {})[client_id] = info

    async def remove(self, channel: str, client_id: str) -> None:
        clients = self._channels.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._channels[channel]

    async def get(self, channel: str) -> dict[str, bytes]:
        return dict(self._channels.get(channel, {}))

    async def close(self) -> None:
        self._channels.clear()


class MemoryIdempotency:
    """Idempotency keys for one process. Past `max_keys` the oldest go first, so memory stays
    bounded and the window shrinks only under a flood of distinct keys."""

    def __init__(self, max_keys: int = 100_000, clock: Clock = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires at, result)
        self._max_keys = max_keys
        self._clock = clock

    async def open(self) -> None:
        """Nothing to connect to."""

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires_at, _) = next(iter(entries.items()))
            if expires_at > now and len(entries) <= self._max_keys:
                break
            del entries[key]

    async def claim(self, channel: str, key: str, ttl: float) -> bytes | None:
        now = self._clock()
        self._expire(now)
        entry = f"{channel}\0{key}"
        found = self._entries.get(entry)
        if found is not None:
            return found[1]
        self._entries[entry] = (now + ttl, b"")
        self._expire(now)
        return None

    async def complete(self, channel: str, key: str, result: bytes, ttl: float) -> None:
        entry = f"{channel}\0{key}"
        self._entries[entry] = (self._clock() + ttl, result)
        self._entries.move_to_end(entry)

    async def release(self, channel: str, key: str) -> None:
        self._entries.pop(f"{channel}\0{key}", None)

    async def close(self) -> None:
        self._entries.clear()
