"""The hub: who is connected, who is subscribed to what, and local fan-out into their outboxes.

It keeps the registry (members by id and by user, memberships, channel subscribers) and runs
fan-out when the broker delivers. Publishing (publishing.py), positioning and history reads
(recovery.py) and presence (presence.py) are its collaborators; the hub's methods of the same
names are the one entry point the session and the server API call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgspec
from msgspec import Raw

from hubbub import protocol
from hubbub.backends.base import Broker, HistoryStore, PresenceStore, StreamTop
from hubbub.config import NamespaceOptions, Settings
from hubbub.core import permissions
from hubbub.core.channels import ChannelRules, names_members, namespace_of
from hubbub.core.members import Member
from hubbub.core.outbox import Flusher, Outbox, TurnBatch
from hubbub.core.presence import Presence
from hubbub.core.publishing import Publishing
from hubbub.core.ratelimit import TokenBucket
from hubbub.core.recovery import Positions, publication_from_store
from hubbub.core.stats import Stats
from hubbub.errors import CommandError, DisconnectCode, ErrorCode

__all__ = ["ChannelSubscribers", "Control", "Counts", "Hub", "namespace_of"]

log = logging.getLogger("hubbub.hub")

DELIVERY_CHECKS: Final = 32  # channels whose history top `watch_delivery` reads per interval


@dataclass(slots=True)
class ChannelSubscribers:
    """Local subscribers of one channel: live outboxes, and those still catching up.

    Membership changes go through `add_live` and `remove`, which also close the channel's open
    turn batch: a newcomer must not get what was published before its subscribe reply, and a
    leaver nothing after its unsubscribe.
    """

    conflate: bool
    namespace: str
    live: dict[str, Outbox] = field(default_factory=dict)
    # While a subscriber reads history, live messages wait here as (offset, frame).
    catching_up: dict[str, list[tuple[int | None, bytes]]] = field(default_factory=dict)
    # Subscribers positioned at an offset (outbox, offset) whose live copy may still be on its way:
    # history and pub/sub are separate connections, and a publisher appends before it broadcasts.
    # Live messages up to that offset are not theirs; the first newer one makes them live.
    settling: dict[str, tuple[Outbox, int]] = field(default_factory=dict)
    # Set once the broker subscription for this channel is in place.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # This loop turn's messages, queued by reference in every live outbox (see outbox.py).
    batch: TurnBatch | None = None
    # The newest offset this node delivered (or positioned a subscriber at): where a node that
    # lost its broker subscription recovers from. Live messages up to `skip_through` were
    # replayed from history already (`Hub.on_resubscribed`) and are dropped when they arrive.
    delivered: int | None = None
    skip_through: int | None = None
    # The epoch of the stream `delivered` counts in (from the last subscribe's read): a replay
    # from a stream with another epoch is no continuation, whatever its offsets say.
    epoch: str | None = None
    # `live`'s outboxes as a list, for the fan-out: walking a list is cheaper than a dict's
    # values once per delivery. Rebuilt at the first fan-out after a membership change.
    fanout: list[Outbox] | None = None

    def __len__(self) -> int:
        return len(self.live) + len(self.catching_up) + len(self.settling)

    def client_ids(self) -> list[str]:
        return [*self.live, *self.catching_up, *self.settling]

    def add_live(self, client_id: str, outbox: Outbox) -> None:
        self.live[client_id] = outbox
        self.batch = None
        self.fanout = None

    def remove(self, client_id: str) -> None:
        self.live.pop(client_id, None)
        self.catching_up.pop(client_id, None)
        self.settling.pop(client_id, None)
        self.batch = None  # the next message opens a batch for those who stay
        self.fanout = None

    def live_outboxes(self) -> list[Outbox]:
        fanout = self.fanout
        if fanout is None:
            fanout = self.fanout = [*self.live.values()]
        return fanout


class Control(msgspec.Struct, omit_defaults=True):
    """A message for sessions on every node, addressed by user (or, kind "stream", by stream)."""

    kind: str  # "message" | "disconnect" | "subscribe" | "unsubscribe" | "stream"
    user: str = ""
    frame: Raw = protocol.NULL
    channel: str = ""
    code: int = 0
    reason: str = ""
    stream: str = ""  # "stream": the HTTP stream a client POSTed `text` for, as its `seq`-th message
    seq: int = 0
    text: str = ""


class StreamReceiver(Protocol):
    """An HTTP stream's session (transports/http_stream.py): its client POSTs commands to any node."""

    def receive(self, seq: int, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Counts:
    """This node's registry in numbers: what metrics, the admin view and /api/info show."""

    connections: int
    users: int  # distinct named users; anonymous connections are not a user
    channels: int
    subscriptions: int


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
        self.flusher = Flusher(call_soon, settings.flush_slice)
        self.stats = Stats()
        self.sessions: dict[str, Member] = {}
        self.users: dict[str, set[Member]] = {}
        self.channels: dict[str, ChannelSubscribers] = {}
        self._memberships: dict[str, set[str]] = {}  # client id -> its channels (the hub's to change)
        self.streams: dict[str, StreamReceiver] = {}  # HTTP streams on this node, by stream id
        self._tasks: set[asyncio.Future[None]] = set()
        self._user_publishes: dict[str, TokenBucket] = {}  # named users with a session here
        self.publishing = Publishing(
            self.rules,
            history,
            broker,
            self.stats,
            max_publication_bytes=settings.max_publication_bytes,
            pipelined=settings.broker != "memory",
        )
        self.positions = Positions(
            history,
            recovery_max_publications=settings.recovery_max_publications,
            history_max_limit=settings.history_max_limit,
        )
        self.presence_tracker = Presence(presence, self.publishing)
        self.publish = self.publishing.publish
        self.publish_many = self.publishing.publish_many
        # With a token key, a connection without a token is useful only if a namespace admits it.
        self.anonymous_allowed = any(options.allow_anonymous for options in settings.namespaces.values())
        broker.set_handler(self)

    # ---- what transports read -------------------------------------------------------------

    def counts(self) -> Counts:
        return Counts(
            connections=len(self.sessions),
            users=sum(1 for user in self.users if user),
            channels=len(self.channels),
            subscriptions=sum(len(subscribers) for subscribers in self.channels.values()),
        )

    def subscriber_counts(self) -> dict[str, int]:
        """Local subscribers per channel."""
        return {channel: len(subscribers) for channel, subscribers in self.channels.items()}

    @property
    def broker_healthy(self) -> bool:
        return self.broker.healthy

    @property
    def stored_publications(self) -> int:
        return self.history_store.stored_publications

    async def stream_top(self, channel: str) -> StreamTop:
        """Where `channel`'s stream stands now (offset and epoch), checking the name first."""
        self.rules.resolve(channel)
        return await self.history_store.top(channel)

    def connections_of(self, user: str) -> int:
        """Open connections of `user` on this node."""
        return len(self.users.get(user, ()))

    def channels_of(self, member: Member) -> AbstractSet[str]:
        """The channels `member` is subscribed to (a live view: copy it to keep it)."""
        return self._memberships.get(member.client_id, _NONE)

    @property
    def limit_hits(self) -> Counter[str]:
        return self.stats.limit_hits

    def count_limit_hit(self, limit: str) -> None:
        """A rate or size limit refused something (exported as hubbub_limit_hits_total)."""
        self.stats.limit_hits[limit] += 1

    def user_publish_bucket(self, user: str) -> TokenBucket:
        """The publish budget shared by every connection of `user` on this node (user_publish_rate)."""
        bucket = self._user_publishes.get(user)
        if bucket is None:
            settings = self.settings
            bucket = self._user_publishes[user] = TokenBucket(settings.user_publish_rate, settings.user_publish_burst)
        return bucket

    # ---- members --------------------------------------------------------------------------

    def add_session(self, member: Member) -> None:
        self.sessions[member.client_id] = member
        self.users.setdefault(member.user, set()).add(member)

    def detach(self, member: Member) -> None:
        """Stop delivering to a closing member at once. Idempotent; remove_session finishes."""
        if self.sessions.pop(member.client_id, None) is None:
            return
        members = self.users.get(member.user)
        if members is not None:
            members.discard(member)
            if not members:
                del self.users[member.user]
                self._user_publishes.pop(member.user, None)
        for channel in self.channels_of(member):
            subscribers = self.channels.get(channel)
            if subscribers is not None:
                subscribers.remove(member.client_id)

    async def remove_session(self, member: Member) -> None:
        """Forget a closed member: presence, leave pushes, broker subscriptions. Idempotent."""
        self.detach(member)
        for channel in list(self.channels_of(member)):
            try:
                await self.unsubscribe(member, channel)
            except Exception:  # one failing backend must not leave the others subscribed
                log.exception("cleanup of %s on %s failed", member.client_id, channel)

    # ---- fan-out (called by the broker, synchronously) ----------------------------------

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        subscribers = self.channels.get(channel)
        if subscribers is None:
            return
        if offset is not None:
            skip = subscribers.skip_through
            if skip is not None:
                if offset <= skip:
                    return  # replayed from history while the broker was away
                subscribers.skip_through = None
            delivered = subscribers.delivered
            if delivered is not None and offset > delivered + 1 and self.broker.resubscribe("stream_gap"):
                # Offsets in between never arrived (a subscription deaf for a moment): clients
                # would take the jump, as they drop only repeats. The replay after the resubscribe
                # brings them from history, this one with them, before anything newer.
                return
            subscribers.delivered = offset
        for waiting in subscribers.catching_up.values():
            waiting.append((offset, frame))
        pushed = self._settle(subscribers, channel, offset, frame) if subscribers.settling else 0
        live = subscribers.live
        stats = self.stats
        stats.messages_out[subscribers.namespace] += len(live) + pushed
        stats.bytes_out[subscribers.namespace] += (len(live) + pushed) * (len(frame) + 1)
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
            for outbox in subscribers.live_outboxes():
                outbox.push_batch(batch)

    @staticmethod
    def _settle(subscribers: ChannelSubscribers, channel: str, offset: int | None, frame: bytes) -> int:
        """Settling subscribers skip the live copies of what their position covers; the first
        newer publication makes them live (it then reaches them with the others). Returns how
        many got `frame` here (a message without an offset, a join or leave)."""
        if offset is None:  # no position: nothing it could repeat
            for outbox, _ in subscribers.settling.values():
                if subscribers.conflate:
                    outbox.push_latest(channel, frame)
                else:
                    outbox.push(frame)
            return len(subscribers.settling)
        for client_id, (outbox, through) in list(subscribers.settling.items()):
            if offset > through:
                del subscribers.settling[client_id]
                subscribers.add_live(client_id, outbox)
        return 0

    def on_control(self, message: bytes) -> None:
        control = msgspec.json.decode(message, type=Control)
        if control.kind == "stream":
            receiver = self.streams.get(control.stream)
            if receiver is not None:
                receiver.receive(control.seq, control.text)
            return
        members = list(self.users.get(control.user, ()))
        if control.kind == "message":
            frame = bytes(control.frame)
            for member in members:
                member.outbox.push(frame)
        elif control.kind == "disconnect":
            for member in members:
                member.disconnect(control.code, control.reason)
        elif control.kind == "subscribe":
            for member in members:
                member.subscribe_by_server(control.channel)
        elif control.kind == "unsubscribe":
            for member in members:
                member.unsubscribe_by_server(control.channel)

    async def watch_delivery(self, interval: float) -> None:
        """Every `interval`, compare a slice of channels' history tops with what this node
        delivered: a publication in history for a whole interval that never arrived means the
        broker went deaf for that channel (the heartbeat cannot see a lost subscription). A top
        of another epoch for a whole interval means the stream was lost and started again under
        live subscribers (its keys evicted or deleted): its offsets began again from 1, below
        what the subscribers hold, so their clients would drop its publications as repeats. Both
        resubscribe, and the replay (`on_resubscribed`) finds the gap it cannot fill and asks the
        subscribers to reconnect and recover (3011, told `recovered: false`)."""
        seen_tops: dict[str, StreamTop] = {}
        start = 0
        while True:
            await asyncio.sleep(interval)  # the check's own clock
            watched = [c for c, s in self.channels.items() if s.delivered is not None]
            start = start if start < len(watched) else 0
            channels = watched[start : start + DELIVERY_CHECKS]
            start += DELIVERY_CHECKS
            reason = ""
            for channel in channels:
                subscribers = self.channels.get(channel)
                previous = seen_tops.get(channel)
                if subscribers is None or subscribers.delivered is None:
                    continue
                if previous is not None and subscribers.epoch is not None and previous.epoch != subscribers.epoch:
                    reason = "stream_restarted"
                    log.warning(
                        "%s: history has epoch %s, this node delivered epoch %s",
                        channel,
                        previous.epoch,
                        subscribers.epoch,
                    )
                    break
                if previous is not None and subscribers.delivered < previous.offset:
                    reason = "stream_ahead"
                    log.warning(
                        "%s: history has offset %d, this node delivered %d",
                        channel,
                        previous.offset,
                        subscribers.delivered,
                    )
                    break
                try:
                    seen_tops[channel] = await self.history_store.top(channel)
                except Exception as exc:  # history unavailable: the broker's own health says so
                    log.debug("delivery check of %s failed: %s", channel, exc)
            if reason:
                seen_tops.clear()
                self.broker.resubscribe(reason)
            for channel in list(seen_tops):
                if channel not in self.channels:
                    del seen_tops[channel]

    async def on_resubscribed(self, reason: str) -> None:
        """The broker was deaf for a while: replay what each channel missed from history, in
        order, before its live messages; where history cannot fill the gap, ask the channel's
        subscribers to reconnect (3011) and recover by themselves. History unavailable: raises
        (the broker retries, the node not ready meanwhile)."""
        log.warning("broker resubscribed (%s): recovering %d channels", reason, len(self.channels))
        gaps = []
        for channel, subscribers in list(self.channels.items()):
            delivered = subscribers.delivered
            if delivered is None:
                continue
            limit = self.settings.recovery_max_publications + 1
            page = await self.history_store.read(channel, after=delivered, limit=limit)
            if page.top.offset != delivered or subscribers.epoch not in (None, page.top.epoch):
                gaps.append((channel, subscribers, delivered, page))
        for channel, subscribers, delivered, page in gaps:
            if self.channels.get(channel) is not subscribers:
                continue
            publications = page.publications
            filled = (
                subscribers.epoch in (None, page.top.epoch)  # the same stream (not lost meanwhile)
                and page.top.offset - delivered == len(publications)
                and publications[0].offset == delivered + 1
            )
            if not filled:
                self.stats.broker_gaps_unfilled += 1
                for client_id in subscribers.client_ids():
                    member = self.sessions.get(client_id)
                    if member is not None:
                        member.disconnect(DisconnectCode.FORCE_RECONNECT, "missed publications: reconnect")
                subscribers.delivered, subscribers.epoch = page.top.offset, page.top.epoch  # they start over
                continue
            for stored in publications:
                if subscribers.delivered is not None and stored.offset <= subscribers.delivered:
                    continue  # arrived live meanwhile
                frame = protocol.encode_publication_push(channel, publication_from_store(stored))
                self.on_channel_message(channel, stored.offset, frame)
            subscribers.skip_through = publications[-1].offset
        self.stats.broker_resubscribes[reason] += 1

    # ---- commands -----------------------------------------------------------------------

    def namespace(self, channel: str) -> NamespaceOptions:
        return self.rules.resolve(channel)

    async def subscribe(
        self,
        member: Member,
        channel: str,
        since: protocol.StreamPosition | None,
        reply: Callable[[protocol.SubscribeResult], None],
    ) -> None:
        """Subscribe, replying with the stream position (and missed publications for `since`).

        Live messages that arrive while history is read wait in `catching_up`; after the
        reply, those newer than the history read go out, and until one has, the subscriber is
        `settling` (live copies of what history gave it are dropped). No gap, no duplicate.
        """
        options = self.rules.resolve(channel)
        subscribers = await self._channel_for(channel, options)
        waiting: list[tuple[int | None, bytes]] = []
        subscribers.catching_up[member.client_id] = waiting
        self._memberships.setdefault(member.client_id, set()).add(channel)
        try:
            await self.presence_tracker.join(channel, options, member.client_id, member.info_in(channel))
            result, last_offset = await self.positions.position(channel, options, since)
        except BaseException:  # one cleanup for every step above
            await self.unsubscribe(member, channel)
            raise
        if subscribers.catching_up.pop(member.client_id, None) is None:
            # The member was detached while we awaited: undo what its cleanup may have missed.
            await self.presence_tracker.forget(channel, options, member.client_id)
            return
        if last_offset is not None and (subscribers.delivered is None or last_offset > subscribers.delivered):
            subscribers.delivered = last_offset
        if subscribers.epoch is None:
            # The epoch the channel's live subscribers follow. A newcomer who reads another one
            # found the stream started again under them: `watch_delivery` sees the difference.
            subscribers.epoch = result.epoch
        reply(result)
        outbox = member.outbox
        if last_offset is None:  # no history: everything live is new
            for _, frame in waiting:
                outbox.push(frame)
            subscribers.add_live(member.client_id, outbox)
            return
        heard = last_offset == 0  # whether the live copy of `last_offset` (or a newer one) reached this node
        for offset, frame in waiting:
            if offset is None or offset > last_offset:
                outbox.push(frame)
            heard = heard or (offset is not None and offset >= last_offset)
        if heard:
            subscribers.add_live(member.client_id, outbox)
        else:
            subscribers.settling[member.client_id] = (outbox, last_offset)

    async def _channel_for(self, channel: str, options: NamespaceOptions) -> ChannelSubscribers:
        """The channel's local subscribers, subscribing this node to it on the broker first."""
        subscribers = self.channels.get(channel)
        if subscribers is not None:
            await subscribers.ready.wait()
            if self.channels.get(channel) is not subscribers:
                raise CommandError(ErrorCode.INTERNAL, "subscription to the broker failed, try again")
            return subscribers
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
        return subscribers

    def stop_delivery(self, member: Member, channel: str) -> None:
        """From now on `member` gets nothing more of `channel` (the synchronous half of unsubscribe)."""
        channels = self._memberships.get(member.client_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._memberships[member.client_id]
        subscribers = self.channels.get(channel)
        if subscribers is not None:
            subscribers.remove(member.client_id)

    async def unsubscribe(self, member: Member, channel: str) -> None:
        self.stop_delivery(member, channel)
        subscribers = self.channels.get(channel)
        # Not `try`/`finally`: compiled by mypyc, an exception leaving a `finally` that awaits
        # stays the thread's current exception and the next such block raises it again
        # (mypyc/mypyc#1114; tests/test_compiled.py keeps `await` out of compiled `finally` blocks).
        try:
            if subscribers is not None and not subscribers:
                del self.channels[channel]
                await self.broker.unsubscribe(channel)
        except BaseException:  # a broker that failed must not leave the member present
            await self._leave_presence(member, channel)
            raise
        await self._leave_presence(member, channel)

    async def _leave_presence(self, member: Member, channel: str) -> None:
        await self.presence_tracker.leave(
            channel, self.rules.resolve(channel), member.client_id, member.info_in(channel)
        )

    async def mark_read(self, user: str, channel: str, offset: int) -> int:
        """Store `user`'s read position (clamped to the stream) and tell the user's other connections,
        and in a member-named channel its other members, on every node."""
        options = self.rules.resolve(channel)
        if not options.keeps_history:
            raise CommandError(ErrorCode.NOT_AVAILABLE, f"read positions need history; {channel!r} keeps none")
        if offset < 0:
            raise CommandError(ErrorCode.BAD_REQUEST, "offset must not be negative")
        top = await self.history_store.top(channel)
        kept = await self.history_store.mark_read(user, channel, min(offset, top.offset))
        frame = Raw(protocol.encode_read_push(channel, user, kept))
        for target in sorted({user, *members_of(channel, options)}):
            await self.publishing.control(protocol.encode(Control(kind="message", user=target, frame=frame)))
        return kept

    async def read_positions(self, user: str, channels: list[str]) -> protocol.ReadPositionsResult:
        """Unread counts: each channel's top offset against `user`'s read position (and, in
        member-named channels, how far the other members read: "seen")."""
        resolved = [(channel, self.rules.resolve(channel)) for channel in channels]
        for channel, options in resolved:
            if not options.keeps_history:
                raise CommandError(ErrorCode.NOT_AVAILABLE, f"read positions need history; {channel!r} keeps none")
        positions = await self.history_store.read_positions(user, channels)
        states: dict[str, protocol.ChannelReadState] = {}
        for channel, options in resolved:
            top = (await self.history_store.top(channel)).offset
            read = min(positions.get(channel, 0), top)  # a lost stream restarts at 0
            others = [member for member in members_of(channel, options) if member != user]
            seen = None
            if others:
                seen = {m: min((await self.history_store.read_positions(m, [channel]))[channel], top) for m in others}
            states[channel] = protocol.ChannelReadState(read=read, offset=top, unread=top - read, seen=seen)
        return protocol.ReadPositionsResult(channels=states)

    async def history(
        self, channel: str, since: protocol.StreamPosition | None, limit: int | None, reverse: bool
    ) -> protocol.HistoryResult:
        return await self.positions.history(channel, self.rules.resolve(channel), since, limit, reverse)

    async def presence(self, channel: str) -> protocol.PresenceResult:
        return await self.presence_tracker.read(channel, self.rules.resolve(channel))

    async def send_to_user(self, user: str, data: Raw, sender: protocol.ClientInfo | None = None) -> None:
        """Push `data` to every connection of `user`, on every node."""
        self.publishing.check_size(data)
        frame = protocol.encode_message_push(protocol.Message(data=data, info=sender))
        await self.publishing.control(protocol.encode(Control(kind="message", user=user, frame=Raw(frame))))

    async def control(self, control: Control) -> None:
        """A control message to the sessions of `control.user` on every node."""
        await self.publishing.control(protocol.encode(control))

    async def disconnect_user(
        self, user: str, code: int = DisconnectCode.FORCE_DISCONNECT, reason: str = "disconnected by server"
    ) -> None:
        control = Control(kind="disconnect", user=user, code=code, reason=reason)
        await self.publishing.control(protocol.encode(control))

    # ---- background work ------------------------------------------------------------------

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
        for member in list(self.sessions.values()):
            member.disconnect(code, reason, notify=False)


def members_of(channel: str, options: NamespaceOptions) -> list[str]:
    """The users a member-named channel is named after (`dm:alice,bob`), else none."""
    if not names_members(options):
        return []
    return [member for member in permissions.channel_parts(channel)[1].split(",") if member]


_NONE: Final[frozenset[str]] = frozenset()  # the channels of a member with no subscription
