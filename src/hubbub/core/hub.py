"""The hub: sessions by id and by user, channel subscribers, publish and local fan-out.

Publishing goes hub -> history (offset) -> broker -> every node's hub -> subscriber outboxes.
The broker hands over the push already encoded, so a publication is encoded once however
many subscribers and nodes receive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import Raw

from hubbub import protocol
from hubbub.backends.base import Append, Broker, HistoryStore, PresenceStore, StoredPublication
from hubbub.config import DEFAULT_NAMESPACE, NamespaceOptions, Settings
from hubbub.core.channels import ChannelRules
from hubbub.core.outbox import Flusher, Outbox, TurnBatch
from hubbub.core.ratelimit import TokenBucket
from hubbub.core.stats import Stats
from hubbub.errors import CommandError, DisconnectCode, ErrorCode

if TYPE_CHECKING:
    from hubbub.core.session import Session

log = logging.getLogger("hubbub.hub")


@dataclass(slots=True)
class ChannelSubscribers:
    """Local subscribers of one channel: live outboxes, and those still catching up."""

    conflate: bool
    namespace: str
    live: dict[str, Outbox] = field(default_factory=dict)
    # While a subscriber reads history, live messages wait here as (offset, frame).
    catching_up: dict[str, list[tuple[int | None, bytes]]] = field(default_factory=dict)
    # Set once the broker subscription for this channel is in place.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # This loop turn's messages, queued by reference in every live outbox (see outbox.py).
    batch: TurnBatch | None = None

    def __len__(self) -> int:
        return len(self.live) + len(self.catching_up)


class Control(msgspec.Struct, omit_defaults=True):
    """A message for sessions on every node, addressed by user."""

    kind: str  # "message" | "disconnect"
    user: str
    frame: Raw = protocol.NULL
    code: int = 0
    reason: str = ""


def namespace_of(channel: str) -> str:
    """The namespace a (valid) channel name belongs to: names hold at most one colon."""
    namespace, colon, _ = channel.partition(":")
    return namespace if colon else DEFAULT_NAMESPACE


def publication_from_store(stored: StoredPublication) -> protocol.Publication:
    info = msgspec.json.decode(stored.info, type=protocol.ClientInfo) if stored.info else None
    return protocol.Publication(data=Raw(stored.data), offset=stored.offset, info=info)


class Hub:
    """Plain-Python core shared by the WebSocket transport and the HTTP API."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        history: HistoryStore,
        presence: PresenceStore,
        *,
        call_soon: Callable[[Callable[[], None]], object],
    ) -> None:
        self.settings = settings
        self.rules = ChannelRules(settings.namespaces, settings.max_channel_name_bytes)
        self.broker = broker
        self.history_store = history
        self.presence_store = presence
        self.call_soon = call_soon
        self.flusher = Flusher(call_soon)
        self.sessions: dict[str, Session] = {}
        self.users: dict[str, set[Session]] = {}
        self.channels: dict[str, ChannelSubscribers] = {}
        self._publish_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._user_publishes: dict[str, TokenBucket] = {}  # named users with a session here
        self.stats = Stats()
        # With a token key, a connection without a token is useful only if a namespace admits it.
        self.anonymous_allowed = any(options.allow_anonymous for options in settings.namespaces.values())
        broker.set_handler(self)

    @property
    def limit_hits(self) -> Counter[str]:
        return self.stats.limit_hits

    def user_publish_bucket(self, user: str) -> TokenBucket:
        """The publish budget shared by every connection of `user` on this node (user_publish_rate)."""
        bucket = self._user_publishes.get(user)
        if bucket is None:
            settings = self.settings
            bucket = self._user_publishes[user] = TokenBucket(settings.user_publish_rate, settings.user_publish_burst)
        return bucket

    def count_limit_hit(self, limit: str) -> None:
        """A rate or size limit refused something (exported as hubbub_limit_hits_total)."""
        self.stats.limit_hits[limit] += 1

    # ---- sessions -------------------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self.sessions[session.client_id] = session
        self.users.setdefault(session.user, set()).add(session)

    def detach(self, session: Session) -> None:
        """Stop delivering to a closing session at once. Idempotent; remove_session finishes."""
        if self.sessions.pop(session.client_id, None) is None:
            return
        sessions = self.users.get(session.user)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.users[session.user]
                self._user_publishes.pop(session.user, None)
        for channel in session.channels:
            subscribers = self.channels.get(channel)
            if subscribers is not None:
                subscribers.live.pop(session.client_id, None)
                subscribers.batch = None  # the next message opens a batch for those who stay
                subscribers.catching_up.pop(session.client_id, None)

    async def remove_session(self, session: Session) -> None:
        """Forget a closed session: presence, leave pushes, broker subscriptions. Idempotent."""
        self.detach(session)
        for channel in list(session.channels):
            try:
                await self.unsubscribe(session, channel)
            except Exception:  # one failing backend must not leave the others subscribed
                log.exception("cleanup of %s on %s failed", session.client_id, channel)

    # ---- fan-out (called by the broker, synchronously) ----------------------------------

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        subscribers = self.channels.get(channel)
        if subscribers is None:
            return
        for waiting in subscribers.catching_up.values():
            waiting.append((offset, frame))
        live = subscribers.live
        stats = self.stats
        stats.messages_out[subscribers.namespace] += len(live)
        stats.bytes_out[subscribers.namespace] += len(live) * (len(frame) + 1)
        if subscribers.conflate:
            for outbox in live.values():
                outbox.push_latest(channel, frame)
            return
        batch = subscribers.batch
        if batch is not None and not batch.closed:
            batch.add(frame)  # every live outbox holds this batch already
            return
        if live:
            batch = subscribers.batch = self.flusher.open_batch(frame)
            for outbox in live.values():
                outbox.push_batch(batch)

    def on_control(self, message: bytes) -> None:
        control = msgspec.json.decode(message, type=Control)
        sessions = list(self.users.get(control.user, ()))
        if control.kind == "message":
            frame = bytes(control.frame)
            for session in sessions:
                session.outbox.push(frame)
        elif control.kind == "disconnect":
            for session in sessions:
                session.disconnect(control.code, control.reason)

    # ---- commands -----------------------------------------------------------------------

    def namespace(self, channel: str) -> NamespaceOptions:
        return self.rules.resolve(channel)

    @asynccontextmanager
    async def _publish_lock(self, channel: str) -> AsyncIterator[None]:
        """Serialise history append + broker publish per channel so offsets go out in order."""
        lock = self._publish_locks.get(channel)
        if lock is None:
            lock = self._publish_locks[channel] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._publish_locks.get(channel) is lock:
                del self._publish_locks[channel]

    async def publish(
        self, channel: str, data: Raw, publisher: protocol.ClientInfo | None = None, *, durable: bool = False
    ) -> protocol.PublishResult:
        """Store (when the namespace keeps history) and fan out. With `durable`, return only once
        the publication is on disk; otherwise once history reads see it."""
        options = self.rules.resolve(channel)
        self._count_publication(channel, data)
        if not options.keeps_history:
            frame = protocol.encode_publication_push(channel, protocol.Publication(data=data, info=publisher))
            await self._broker_publish(channel, None, frame)
            return protocol.PublishResult()
        info = protocol.encode(publisher) if publisher is not None else None
        async with self._publish_lock(channel):
            try:
                top = await self.history_store.append(
                    channel, bytes(data), info, size=options.history_size, ttl=options.history_ttl
                )
            except Exception as exc:  # a history backend that is down: never a silent drop
                log.warning("history append to %s failed: %s", channel, exc)
                raise CommandError(ErrorCode.INTERNAL, "history unavailable: retry later") from None
            publication = protocol.Publication(data=data, offset=top.offset, info=publisher)
            await self._broker_publish(channel, top.offset, protocol.encode_publication_push(channel, publication))
        if durable:
            await self.history_store.sync()
        return protocol.PublishResult(offset=top.offset, epoch=top.epoch)

    async def publish_many(
        self, publications: list[tuple[str, Raw]], *, durable: bool = False
    ) -> list[protocol.PublishResult]:
        """Publish a batch (server API): one history operation and one broker operation for all, so
        over Redis the batch reaches every node together and each subscriber gets one frame.

        Every channel is checked before anything is published. Order is kept per channel.
        """
        resolved = [(channel, data, self.rules.resolve(channel)) for channel, data in publications]
        for channel, data, _ in resolved:
            self._count_publication(channel, data)
        async with contextlib.AsyncExitStack() as locks:
            for channel in sorted({channel for channel, _, options in resolved if options.keeps_history}):
                await locks.enter_async_context(self._publish_lock(channel))
            appends = [
                Append(channel, bytes(data), None, options.history_size, options.history_ttl)
                for channel, data, options in resolved
                if options.keeps_history
            ]
            try:
                tops = iter(await self.history_store.append_many(appends) if appends else [])
            except Exception as exc:
                log.warning("history append of a batch failed: %s", exc)
                raise CommandError(ErrorCode.INTERNAL, "history unavailable: retry later") from None
            messages: list[tuple[str, int | None, bytes]] = []
            results = []
            for channel, data, options in resolved:
                if options.keeps_history:
                    top = next(tops)
                    publication = protocol.Publication(data=data, offset=top.offset)
                    results.append(protocol.PublishResult(offset=top.offset, epoch=top.epoch))
                else:
                    publication = protocol.Publication(data=data)
                    results.append(protocol.PublishResult())
                messages.append((channel, publication.offset, protocol.encode_publication_push(channel, publication)))
            await self._to_broker(self.broker.publish_many(messages), f"a batch of {len(messages)}")
        if durable:
            await self.history_store.sync()
        return results

    def _count_publication(self, channel: str, data: Raw) -> None:
        stats = self.stats
        namespace = namespace_of(channel)
        stats.messages_in[namespace] += 1
        stats.bytes_in[namespace] += len(data)
        stats.channel_publications[channel] += 1

    async def _broker_publish(self, channel: str, offset: int | None, frame: bytes) -> None:
        await self._to_broker(self.broker.publish(channel, offset, frame), channel)

    async def _to_broker(self, publishing: Awaitable[None], what: str) -> None:
        """Await a broker publish, timed; a failure becomes a temporary error, never a silent drop."""
        started = time.perf_counter()
        try:
            await publishing
        except Exception as exc:
            self.stats.broker_errors += 1
            log.warning("broker publish of %s failed: %s", what, exc)
            raise CommandError(ErrorCode.INTERNAL, "broker unavailable: retry later") from None
        finally:
            self.stats.broker_latency.observe(time.perf_counter() - started)

    async def subscribe(
        self,
        session: Session,
        channel: str,
        since: protocol.StreamPosition | None,
        reply: Callable[[protocol.SubscribeResult], None],
    ) -> None:
        """Subscribe, replying with the stream position (and missed publications for `since`).

        Live messages that arrive while history is read wait in `catching_up`; after the
        reply, those newer than the history read go out. No gap, no duplicate.
        """
        options = self.rules.resolve(channel)
        subscribers = self.channels.get(channel)
        if subscribers is None:
            subscribers = self.channels[channel] = ChannelSubscribers(
                conflate=options.conflate, namespace=namespace_of(channel)
            )
            try:
                await self.broker.subscribe(channel)
            except BaseException:
                del self.channels[channel]
                raise
            finally:
                subscribers.ready.set()
        else:
            await subscribers.ready.wait()
            if self.channels.get(channel) is not subscribers:
                raise CommandError(ErrorCode.INTERNAL, "subscription to the broker failed, try again")
        waiting: list[tuple[int | None, bytes]] = []
        subscribers.catching_up[session.client_id] = waiting
        session.channels.add(channel)
        try:
            if options.presence:
                await self.presence_store.add(channel, session.client_id, protocol.encode(session.info))
            if options.join_leave:
                await self._broker_publish(channel, None, protocol.encode_join_push(channel, session.info, "join"))
            result, last_offset = await self._position(channel, options, since)
        except BaseException:
            await self.unsubscribe(session, channel)
            raise
        if subscribers.catching_up.pop(session.client_id, None) is None:
            # The session was detached while we awaited: undo what it may have missed cleaning.
            if options.presence:
                await self.presence_store.remove(channel, session.client_id)
            return
        reply(result)
        outbox = session.outbox
        for offset, frame in waiting:
            if offset is None or last_offset is None or offset > last_offset:
                outbox.push(frame)
        subscribers.live[session.client_id] = outbox
        subscribers.batch = None  # a batch opened before the join is not this subscriber's

    async def _position(
        self, channel: str, options: NamespaceOptions, since: protocol.StreamPosition | None
    ) -> tuple[protocol.SubscribeResult, int | None]:
        if not options.keeps_history:
            if since is None:
                return protocol.SubscribeResult(), None
            return protocol.SubscribeResult(was_recovering=True, recovered=False), None
        if since is None:
            if options.conflate:
                return await self._snapshot(channel, None)
            top = await self.history_store.top(channel)
            return protocol.SubscribeResult(recoverable=True, epoch=top.epoch, offset=top.offset), top.offset
        limit = self.settings.recovery_max_publications
        page = await self.history_store.read(channel, after=since.offset, limit=limit + 1)
        top = page.top
        missed = top.offset - since.offset
        recovered = (
            since.epoch == top.epoch
            and 0 <= missed <= limit
            and len(page.publications) == missed
            and (missed == 0 or page.publications[0].offset == since.offset + 1)
        )
        if not recovered and options.conflate:
            return await self._snapshot(channel, since)
        publications = [publication_from_store(p) for p in page.publications] if recovered else None
        result = protocol.SubscribeResult(
            recoverable=True,
            epoch=top.epoch,
            offset=top.offset,
            was_recovering=True,
            recovered=recovered,
            publications=publications,
        )
        return result, top.offset

    async def _snapshot(
        self, channel: str, since: protocol.StreamPosition | None
    ) -> tuple[protocol.SubscribeResult, int]:
        """Conflated channels start from their newest value, not from a replay of the backlog.

        The reply carries the latest publication; parked live ones newer than it follow.
        """
        page = await self.history_store.read(channel, limit=1, reverse=True)
        result = protocol.SubscribeResult(
            recoverable=True,
            epoch=page.top.epoch,
            offset=page.top.offset,
            was_recovering=True if since is not None else None,
            recovered=False if since is not None else None,
            publications=[publication_from_store(p) for p in page.publications],
        )
        return result, page.top.offset

    def stop_delivery(self, session: Session, channel: str) -> None:
        """From now on `session` gets nothing more of `channel` (the synchronous half of unsubscribe)."""
        session.channels.discard(channel)
        subscribers = self.channels.get(channel)
        if subscribers is not None:
            subscribers.live.pop(session.client_id, None)
            subscribers.batch = None
            subscribers.catching_up.pop(session.client_id, None)

    async def unsubscribe(self, session: Session, channel: str) -> None:
        self.stop_delivery(session, channel)
        subscribers = self.channels.get(channel)
        if subscribers is not None and not subscribers:
            del self.channels[channel]
            await self.broker.unsubscribe(channel)
        options = self.rules.resolve(channel)
        if options.presence:
            await self.presence_store.remove(channel, session.client_id)
        if options.join_leave:
            await self._broker_publish(channel, None, protocol.encode_join_push(channel, session.info, "leave"))

    async def history(
        self, channel: str, since: protocol.StreamPosition | None, limit: int | None, reverse: bool
    ) -> protocol.HistoryResult:
        options = self.rules.resolve(channel)
        if not options.keeps_history:
            raise CommandError(ErrorCode.NOT_AVAILABLE, f"history is not enabled for channel {channel!r}")
        max_limit = self.settings.history_max_limit
        if limit is not None and not 0 <= limit <= max_limit:
            raise CommandError(ErrorCode.BAD_REQUEST, f"limit must be between 0 and {max_limit}")
        page = await self.history_store.read(
            channel,
            after=since.offset if since is not None else None,
            limit=max_limit if limit is None else limit,
            reverse=reverse,
        )
        if since is not None and since.epoch != page.top.epoch:
            raise CommandError(ErrorCode.UNRECOVERABLE_POSITION, "epoch changed: history was lost")
        return protocol.HistoryResult(
            publications=[publication_from_store(p) for p in page.publications],
            epoch=page.top.epoch,
            offset=page.top.offset,
        )

    async def presence(self, channel: str) -> protocol.PresenceResult:
        options = self.rules.resolve(channel)
        if not options.presence:
            raise CommandError(ErrorCode.NOT_AVAILABLE, f"presence is not enabled for channel {channel!r}")
        entries = await self.presence_store.get(channel)
        clients = {client: msgspec.json.decode(info, type=protocol.ClientInfo) for client, info in entries.items()}
        return protocol.PresenceResult(clients=clients)

    async def send_to_user(self, user: str, data: Raw, sender: protocol.ClientInfo | None = None) -> None:
        """Push `data` to every connection of `user`, on every node."""
        frame = protocol.encode_message_push(protocol.Message(data=data, info=sender))
        await self.broker.publish_control(protocol.encode(Control(kind="message", user=user, frame=Raw(frame))))

    async def disconnect_user(
        self, user: str, code: int = DisconnectCode.FORCE_DISCONNECT, reason: str = "disconnected by server"
    ) -> None:
        control = Control(kind="disconnect", user=user, code=code, reason=reason)
        await self.broker.publish_control(protocol.encode(control))

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run cleanup that a timer starts (it cannot await); its failure is logged, never lost."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)

        def done(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", what, exc_info=task.exception())

        task.add_done_callback(done)

    async def wait_spawned(self) -> None:
        """Until the work `spawn` started has finished (tests, and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close_all(self, code: int, reason: str) -> None:
        for session in list(self.sessions.values()):
            session.disconnect(code, reason, notify=False)
