"""Contracts every backend implements, so memory, SQLite and Redis are interchangeable.

Backends never import the hub: the hub registers a handler with the broker, as
centrifuge's node does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredPublication:
    """A publication as history keeps it: raw JSON data, optional raw JSON publisher info, and
    when it was stored (unix seconds by the store's clock; None where an older store kept none)."""

    offset: int
    data: bytes
    info: bytes | None = None
    time: float | None = None


@dataclass(frozen=True, slots=True)
class StreamTop:
    """Where a channel's stream stands: offset of its newest publication (0 = none) and epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Announcement:
    """A publication's push frame, split where its offset goes: `head + b"%d" % offset + tail`.
    The offset is known only inside the store's atomic append (see HistoryStore.announces)."""

    head: bytes
    tail: bytes


@dataclass(frozen=True, slots=True)
class Append:
    """One publication to store: see HistoryStore.append."""

    channel: str
    data: bytes
    info: bytes | None
    size: int
    ttl: float
    announcement: Announcement | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    publications: list[StoredPublication]
    top: StreamTop


class Lifecycle(Protocol):
    """Every backend: `open` once before use (connect, load, start background work), `close` once
    after (flush, stop, disconnect). Both are awaited by the server, in that order."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class HistoryStore(Lifecycle, Protocol):
    """Bounded, expiring publication history per channel.

    Guarantees: offsets of a channel increase by exactly one per `append`, starting at 1, and
    appends on one channel are applied in call order. The `epoch` changes whenever offsets
    could repeat (the stream was lost or recreated), so (offset, epoch) names one publication.
    When `append` returns, every later `read` sees the publication; once `sync` returns,
    everything appended before it survives a restart (for durable stores).

    A store that `announces` hands each `append_many` item's announcement to every node's broker
    subscription in the same atomic step as the append (Redis: the append script publishes it),
    so every node hears a channel's publications in offset order, whichever nodes published
    them; the caller then does not broadcast them itself. Other stores ignore announcements.
    """

    announces: bool

    async def append(self, channel: str, data: bytes, info: bytes | None, *, size: int, ttl: float) -> StreamTop: ...

    async def append_many(self, items: list[Append]) -> list[StreamTop]:
        """Several appends, applied in list order within each channel, as one operation where the
        store can (one Redis round trip): a batch then reaches subscribers together and coalesces."""
        ...

    async def read(
        self, channel: str, *, after: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        """Publications still kept, oldest first (newest first when `reverse`).

        `after` keeps only offsets greater than it (or, when `reverse`, smaller than it).
        """
        ...

    async def top(self, channel: str) -> StreamTop: ...

    async def sync(self) -> None:
        """Wait until every publication appended so far is durable (no-op for memory)."""
        ...

    @property
    def stored_publications(self) -> int:
        """How many publications the store holds (may lag by one write batch; for metrics)."""
        ...

    async def mark_read(self, user: str, channel: str, offset: int) -> int:
        """Record that `user` has read `channel` up to `offset`; positions only move forward.
        Returns the position kept (the larger of the old and the new)."""
        ...

    async def read_positions(self, user: str, channels: list[str]) -> dict[str, int]:
        """`user`'s read position in each of `channels` (0 where none was recorded)."""
        ...

    async def channels(self) -> list[str]:
        """Every channel the store keeps a record of (only channels that were appended to)."""
        ...

    async def close(self) -> None: ...


class BrokerHandler(Protocol):
    """What a broker calls when a message arrives. Calls are synchronous and in order."""

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None: ...

    def on_control(self, message: bytes) -> None: ...

    async def on_resubscribed(self, reason: str) -> None:
        """The broker had lost its subscriptions (`reason`: "connection_lost", or "heartbeat" when
        it stopped hearing itself) and has them back: what was published meanwhile never arrived.
        The broker reports itself unhealthy until this returns."""
        ...


class Broker(Lifecycle, Protocol):
    """Fan-out between nodes.

    Messages published to one channel reach every node subscribed to it, once, in publish
    order. `frame` is the push already encoded for clients: nodes forward it untouched.
    Delivery is at-most-once; history (with offsets) is what makes gaps recoverable.
    """

    def set_handler(self, handler: BrokerHandler) -> None: ...

    @property
    def healthy(self) -> bool:
        """False while the broker cannot deliver (the node then reports not ready)."""
        ...

    async def publish(self, channel: str, offset: int | None, frame: bytes) -> None: ...

    async def publish_many(self, messages: list[tuple[str, int | None, bytes]]) -> None:
        """Several publish() calls, in order, in one operation where the broker can."""
        ...

    async def publish_control(self, message: bytes) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    def resubscribe(self, reason: str) -> bool:
        """The hub saw publications that never arrived: drop and restore the subscriptions, then
        `on_resubscribed(reason)` before any newer message. Returns whether that will happen (a
        broker that cannot lose any ignores it and returns False)."""
        ...

    async def close(self) -> None: ...


class PresenceStore(Lifecycle, Protocol):
    """Who is subscribed to a channel: connection id -> raw JSON ClientInfo."""

    async def add(self, channel: str, client_id: str, info: bytes) -> None: ...

    async def remove(self, channel: str, client_id: str) -> None: ...

    async def get(self, channel: str) -> dict[str, bytes]: ...

    async def close(self) -> None: ...


class IdempotencyStore(Lifecycle, Protocol):
    """First results of publishes made with an idempotency key (per channel), kept for a window.

    `claim` is atomic across every node sharing the store: of two publishes with one key, one
    claims it (None) and the other sees it pending (b"") or its finished result.
    """

    async def claim(self, channel: str, key: str, ttl: float) -> bytes | None:
        """None: the key is ours now (publish, then `complete` or `release`). Else the stored
        result, or b"" while the publish that claimed it is still running."""
        ...

    async def complete(self, channel: str, key: str, result: bytes, ttl: float) -> None:
        """Keep `result` (non-empty bytes) as the answer to `key` for `ttl` seconds."""
        ...

    async def release(self, channel: str, key: str) -> None:
        """The claimed publish failed: a retry may claim the key again."""
        ...
