"""Outbox payloads as GraphQL `next` messages: parsed once per fan-out, executed once per group.

A fan-out hands consecutive connections the same payload object (core/outbox.py), so its lines
are parsed once (`EventCache`), and each publication keeps the results executed for it by group:
(document, operation name, variables, user when the document is personal, epoch). Every other
subscriber of the group gets the same result bytes with only its operation id spliced in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Raw

from hubbub.transports.frames import text_frame
from hubbub.transports.payloads import lines_of

log = logging.getLogger("hubbub.graphql")

_decode_object = msgspec.json.Decoder(dict[str, Raw]).decode
_decode_any = msgspec.json.Decoder().decode

GroupKey = tuple[str, str | None, bytes, str | None, str | None]  # query, operation, variables, user, epoch
FAILED = b'{"errors":[{"message":"internal error"}],"data":null}'


class SharedResult:
    """One execution's `next` payload for a group; awaited when a resolver is async."""

    __slots__ = ("_last_frame", "_last_id", "payload", "waiting")

    def __init__(self, outcome: bytes | Awaitable[bytes]) -> None:
        self._last_id = b""
        self._last_frame = b""
        self.waiting: asyncio.Future[bytes] | None = None
        if isinstance(outcome, bytes):
            self.payload: bytes | None = outcome
        else:
            self.payload = None
            self.waiting = asyncio.ensure_future(outcome)
            self.waiting.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[bytes]) -> None:
        if future.cancelled():
            self.payload = FAILED
            return
        error = future.exception()
        if error is not None:
            log.error("a GraphQL execution failed", exc_info=error)
            self.payload = FAILED
        else:
            self.payload = future.result()

    def frame_for(self, id_json: bytes) -> bytes:
        """The `next` frame for one operation id (consecutive equal ids share one frame)."""
        if id_json != self._last_id or not self._last_frame:
            assert self.payload is not None
            self._last_id = id_json
            self._last_frame = next_frame(id_json, self.payload)
        return self._last_frame


def next_frame(id_json: bytes, payload: bytes) -> bytes:
    return text_frame(b'{"id":%s,"type":"next","payload":%s}' % (id_json, payload))


class Publication:
    """A publication of an outbox payload: its channel, offset and data, with results by group."""

    __slots__ = ("_decoded", "channel", "data", "offset", "results")

    def __init__(
        self, channel: str, data: bytes, offset: int | None, results: dict[GroupKey, SharedResult] | None = None
    ) -> None:
        self.channel = channel
        self.data = data
        self.offset = offset
        self.results: dict[GroupKey, SharedResult] = {} if results is None else results
        self._decoded: Any = None

    def decoded(self) -> Any:
        if self._decoded is None:
            self._decoded = (_decode_any(self.data),)
        return self._decoded[0]

    def result(self, key: GroupKey, execute: Callable[[Publication], bytes | Awaitable[bytes]]) -> SharedResult:
        shared = self.results.get(key)
        if shared is None:
            try:
                outcome = execute(self)
            except Exception:
                log.exception("a GraphQL execution failed")
                outcome = FAILED
            shared = self.results[key] = SharedResult(outcome)
        return shared


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply to one of the connection's own commands (the raw line, read by its waiter)."""

    id: int
    line: bytes


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The server ended a channel's subscription (a subscription token expired, the server API)."""

    channel: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class RefreshAsked:
    """The token expires in `ttl` seconds: the client may send a new one in a ping."""

    ttl: int


Event = Publication | Reply | Unsubscribed | RefreshAsked


class ResultCache:
    """Results by publication, across payloads: a reader that fell behind gets the turn batches
    it missed joined into a payload of its own, and must not execute them again. A publication is
    known by channel, offset and acceptance time (a history reset reuses offsets, not times)."""

    __slots__ = ("_recent",)

    SIZE = 256  # publications; each holds one result per group that received it

    def __init__(self) -> None:
        self._recent: OrderedDict[tuple[str, int, int], dict[GroupKey, SharedResult]] = OrderedDict()

    def results_for(self, key: tuple[str, int, int]) -> dict[GroupKey, SharedResult]:
        found = self._recent.get(key)
        if found is None:
            found = self._recent[key] = {}
            if len(self._recent) > self.SIZE:
                self._recent.popitem(last=False)
        return found


def events_of(payload: bytes, shared: ResultCache | None = None) -> list[Event]:
    """The lines of an outbox payload a GraphQL connection acts on (join, leave, direct
    messages and the rest have no GraphQL form and are dropped)."""
    events: list[Event] = []
    for line in lines_of(payload):
        if line.reply_id is not None:
            events.append(Reply(line.reply_id, line.raw))
            continue
        fields = line.fields or {}
        channel = line.channel or ""
        pub = fields.get("pub")
        if pub is not None:
            body = _decode_object(pub)
            offset = body.get("offset")
            at = int(offset) if offset is not None else None
            accepted = body.get("time")
            results = None
            if shared is not None and at is not None and accepted is not None:
                results = shared.results_for((channel, at, int(accepted)))
            events.append(Publication(channel, bytes(body.get("data", b"null")), at, results))
            continue
        unsubscribed = fields.get("unsubscribe")
        if unsubscribed is not None:
            body = msgspec.json.decode(unsubscribed)
            events.append(Unsubscribed(channel, int(body.get("code", 0)), str(body.get("reason", ""))))
            continue
        refresh = fields.get("refresh")
        if refresh is not None:
            events.append(RefreshAsked(int(msgspec.json.decode(refresh).get("ttl", 0))))
    return events


class Batch:
    """One payload's events, shared by every connection a fan-out hands it to. When they are all
    publications of one channel (`channel`), a connection with one operation on it receives the
    same bytes as every other in the operation's group: built once, kept in `joined`."""

    __slots__ = ("channel", "events", "joined")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        channels = {event.channel for event in events if isinstance(event, Publication)}
        single = len(channels) == 1 and all(isinstance(event, Publication) for event in events)
        self.channel: str | None = channels.pop() if single else None
        self.joined: dict[tuple[GroupKey, bytes], bytes] = {}  # (group, operation id) -> frames


class EventCache:
    """The events of the last few payloads, by identity: a fan-out hands consecutive connections
    the same payload object, but a big one is flushed in slices between which newer payloads go
    out, so the last one alone would be parsed and executed again slice after slice."""

    __slots__ = ("_recent", "results")

    SIZE = 16

    def __init__(self) -> None:
        self._recent: OrderedDict[int, tuple[bytes, Batch]] = OrderedDict()
        self.results = ResultCache()  # also for publications recovered from history

    def batch_for(self, payload: bytes) -> Batch:
        key = id(payload)
        found = self._recent.get(key)
        if found is not None and found[0] is payload:  # the entry holds the payload: its id is not reused
            return found[1]
        batch = Batch(events_of(payload, self.results))
        self._recent[key] = (payload, batch)
        if len(self._recent) > self.SIZE:
            self._recent.popitem(last=False)
        return batch

    def events_for(self, payload: bytes) -> list[Event]:
        return self.batch_for(payload).events
