"""The server API, once: what `/api/*` answers over HTTP and `hubbub.Server` answers in-process.

One implementation, so both have the same semantics: a publish returns once the publication
is in history (on disk for SQLite), every channel is checked before a broadcast publishes
anything, and an idempotency key makes a retried publish answer with the first result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from msgspec import Raw

from hubbub import protocol
from hubbub.core.hub import Control, Hub
from hubbub.core.idempotency import Idempotency
from hubbub.core.session import SERVER_VERSION
from hubbub.errors import CommandError, DisconnectCode, ErrorCode

T = TypeVar("T")

# Idempotency scopes of the calls that are not a publish to one channel (whose scope is the channel).
BROADCAST_SCOPE = "broadcast:"
BATCH_SCOPE = "batch:"
SEND_SCOPE = "send:"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """This node at a glance (`/api/info`)."""

    version: str
    pid: int
    uptime: float
    development_mode: bool
    connections: int
    users: int
    channels: int
    namespaces: list[str]


class ServerApi:
    """Publish, send, disconnect, subscribe users, read history and presence; data is raw JSON."""

    def __init__(self, hub: Hub, idempotency: Idempotency, *, development_mode: bool) -> None:
        self.hub = hub
        self._idempotency = idempotency
        self._development_mode = development_mode
        self._started_at = time.time()

    async def publish(
        self, channel: str, data: Raw, *, info: Raw | None = None, idempotency_key: str | None = None
    ) -> protocol.PublishResult:
        """`info` names who speaks (any JSON, e.g. {"name": "Billing"}): no user, no connection."""
        publisher = protocol.ClientInfo(user="", client="", info=info) if info is not None else None
        self.hub.namespace(channel)  # an unknown namespace is refused before the key is claimed

        async def publish() -> protocol.PublishResult:
            return await self.hub.publish(channel, data, publisher, durable=True)

        if idempotency_key is None:
            return await publish()
        return await self._idempotency.once(channel, idempotency_key, publish, protocol.PublishResult)

    async def broadcast(
        self, channels: list[str], data: Raw, *, idempotency_key: str | None = None
    ) -> list[protocol.PublishResult]:
        """The same data to several channels; every channel is checked before any is published."""
        if not channels:
            raise CommandError(ErrorCode.BAD_REQUEST, "channels must not be empty")
        limit = self.hub.settings.max_channels_per_connection
        if len(channels) > limit:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, f"at most {limit} channels")
        for channel in channels:
            self.hub.namespace(channel)  # before the key is claimed

        async def broadcast() -> list[protocol.PublishResult]:
            return await self.hub.publish_many([(channel, data) for channel in channels], durable=True)

        return await self._at_most_once(BROADCAST_SCOPE, idempotency_key, broadcast, list[protocol.PublishResult])

    async def batch(
        self, publications: list[tuple[str, Raw]], *, idempotency_key: str | None = None
    ) -> list[protocol.PublishResult]:
        """Many publications, each to its own channel: one history and one broker operation."""
        limit = self.hub.settings.max_publish_batch
        if len(publications) > limit:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, f"at most {limit} publications per batch")
        for channel, _ in publications:
            self.hub.namespace(channel)

        async def batch() -> list[protocol.PublishResult]:
            return await self.hub.publish_many(publications, durable=True)

        return await self._at_most_once(BATCH_SCOPE, idempotency_key, batch, list[protocol.PublishResult])

    async def send(self, user: str, data: Raw, *, idempotency_key: str | None = None) -> None:
        """A message to every connection of `user`, on every node (nothing is kept)."""

        async def send() -> protocol.Empty:
            await self.hub.send_to_user(user, data)
            return protocol.Empty()

        await self._at_most_once(SEND_SCOPE, idempotency_key, send, protocol.Empty)

    async def _at_most_once(self, scope: str, key: str | None, work: Callable[[], Awaitable[T]], kind: type[T]) -> T:
        if key is None:
            return await work()
        return await self._idempotency.once(scope, key, work, kind)

    async def disconnect(self, user: str, *, reconnect: bool = False) -> int:
        """Close every connection of `user` on every node; returns how many were on this node."""
        code = DisconnectCode.FORCE_RECONNECT if reconnect else DisconnectCode.FORCE_DISCONNECT
        here = self.hub.connections_of(user)  # before: the disconnect empties it
        await self.hub.disconnect_user(user, code, "disconnected by the server API")
        return here

    async def subscribe(self, user: str, channel: str) -> int:
        """Subscribe every connection of `user`, on every node, to `channel` (a server-side
        subscription: no permission check, a `subscribe` push tells the client). Returns how many
        connections of the user are on this node."""
        self.hub.namespace(channel)
        await self.hub.control(Control(kind="subscribe", user=user, channel=channel))
        return self.hub.connections_of(user)

    async def unsubscribe(self, user: str, channel: str) -> int:
        """End `user`'s subscriptions to `channel` on every node (an `unsubscribe` push says so)."""
        self.hub.namespace(channel)
        await self.hub.control(Control(kind="unsubscribe", user=user, channel=channel))
        return self.hub.connections_of(user)

    async def history(
        self,
        channel: str,
        *,
        since_offset: int | None = None,
        epoch: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> protocol.HistoryResult:
        """Publications kept; with `since_offset` only newer ones (of the current stream without `epoch`)."""
        since = None
        if since_offset is not None:
            if epoch is None:
                epoch = (await self.hub.stream_top(channel)).epoch
            since = protocol.StreamPosition(offset=since_offset, epoch=epoch)
        return await self.hub.history(channel, since, limit, reverse)

    async def presence(self, channel: str) -> protocol.PresenceResult:
        return await self.hub.presence(channel)

    def channels(self) -> dict[str, int]:
        """Channels with subscribers on this node, and how many."""
        counts = self.hub.subscriber_counts()
        return {name: counts[name] for name in sorted(counts)}

    def info(self) -> NodeInfo:
        counts = self.hub.counts()
        return NodeInfo(
            version=SERVER_VERSION,
            pid=os.getpid(),
            uptime=round(time.time() - self._started_at, 3),
            development_mode=self._development_mode,
            connections=counts.connections,
            users=counts.users,
            channels=counts.channels,
            namespaces=sorted(self.hub.settings.namespaces),
        )
