"""Server-Sent Events: `GET /connection/sse?channel=NAME` as a `text/event-stream` for EventSource.

One-way and SDK-free: the query names the channels, a token comes in the query or an
`Authorization: Bearer` header, and the stream runs the same connect and subscribe commands as a
WebSocket client (same permissions, limits, rate limits and hooks). Each publication is an event
whose `id:` holds the stream's position in every channel, so the browser's own reconnect sends
it back as `Last-Event-ID` and resumes from history with no gap and no duplicate; when the gap
cannot be filled an `unrecovered` event says so (docs/protocol.md#server-sent-events).

A payload is parsed once per fan-out and shared (`EventCache`): each stream adds only its `id:`.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, quote

import msgspec
from msgspec import Raw
from websockets.http11 import Response

from hubbub import protocol
from hubbub.core.application import Peer, application_for
from hubbub.core.session import Session
from hubbub.core.session import State as SessionState
from hubbub.errors import DisconnectCode, ErrorCode, close_code_allows_reconnect
from hubbub.transports.admission import peer_ip
from hubbub.transports.handshake import UpgradeRequest
from hubbub.transports.http_exchange import (
    SessionStream,
    StreamContext,
    StreamSink,
    cors_headers,
    error_body,
    whole_response,
)
from hubbub.transports.payloads import lines_of
from hubbub.transports.wsconnection import WebSocketConnection

SSE_PATH = "/connection/sse"
EPOCH = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_ID_CHANNELS = 1024  # fields parsed from a Last-Event-ID (the head size bounds it as well)
KEEPALIVE = b": keep-alive\n\n"
CONNECT_ID = 1

_decode_object = msgspec.json.Decoder(dict[str, Raw]).decode
_decode_subscribe = msgspec.json.Decoder(protocol.SubscribeResult).decode


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event of a payload, shared by every stream it goes to. `channel` and `offset` move
    the stream's position (an `id:` is added per stream); `subscribed` carries a subscribe result."""

    body: bytes
    channel: str | None = None
    offset: int | None = None
    subscribed: protocol.SubscribeResult | None = None
    unsubscribed: bool = False
    disconnect: bool = False
    reply_id: int | None = None  # a reply to the stream's own commands
    reply: bytes = b""


def _event(kind: str | None, data: bytes) -> bytes:
    head = b"event: %s\n" % kind.encode() if kind else b""
    return head + b"data: " + data + b"\n\n"


def _with_channel(channel_json: bytes, body: bytes) -> bytes:
    """`{"channel":...}` spliced into a JSON object's front: `{"channel":"c","data":...}`."""
    if body == b"{}":
        return b'{"channel":%s}' % channel_json
    return b'{"channel":%s,%s' % (channel_json, body[1:])


def subscribed_events(channel: str, result: protocol.SubscribeResult) -> list[Event]:
    """A subscribe result as events: `subscribed` (or `unrecovered`), then what it recovered."""
    channel_json = protocol.encode(channel)
    lost = bool(result.was_recovering) and result.recovered is False
    summary = protocol.SubscribeResult(
        recoverable=result.recoverable,
        epoch=result.epoch,
        offset=result.offset,
        was_recovering=result.was_recovering,
        recovered=result.recovered,
    )
    # The stream's position after this event: before the first publication recovered, so a stream
    # cut while they are on their way asks for them again.
    publications = result.publications or ()
    first = publications[0].offset if publications else None
    position = first - 1 if first is not None else result.offset
    data = _with_channel(channel_json, protocol.encode(summary))
    events = [Event(_event("unrecovered" if lost else "subscribed", data), channel, position, subscribed=summary)]
    for publication in publications:
        events.append(publication_event(channel, channel_json, protocol.encode(publication), publication.offset))
    return events


def publication_event(channel: str, channel_json: bytes, publication: bytes, offset: int | None) -> Event:
    return Event(_event(None, _with_channel(channel_json, publication)), channel=channel, offset=offset)


PUSH_EVENTS = {"join": "join", "leave": "leave", "read": "read", "unsubscribe": "unsubscribed"}


def events_of(payload: bytes) -> list[Event]:
    """Every line of an outbox payload as SSE events (replies kept for the stream's commands)."""
    events: list[Event] = []
    for line in lines_of(payload):
        if line.reply_id is not None:
            events.append(Event(b"", reply_id=line.reply_id, reply=line.raw))
            continue
        for kind, body in (line.fields or {}).items():
            events.extend(_push_events(kind, bytes(body), line.channel, line.channel_json))
    return events


def _push_events(kind: str, body: bytes, channel: str | None, channel_json: bytes) -> list[Event]:
    if kind == "pub" and channel is not None:
        offset = _decode_object(body).get("offset")
        return [publication_event(channel, channel_json, body, int(offset) if offset is not None else None)]
    if kind == "subscribe" and channel is not None:  # a server-side subscription
        return subscribed_events(channel, _decode_subscribe(body))
    if kind in PUSH_EVENTS and channel is not None:
        event = _event(PUSH_EVENTS[kind], _with_channel(channel_json, body))
        return [Event(event, channel, unsubscribed=kind == "unsubscribe")]
    if kind == "message":
        return [Event(_event("direct", body))]
    if kind == "disconnect":
        return [Event(_event("disconnect", body), disconnect=True)]
    return []  # refresh and sub_refresh: a one-way stream cannot answer them


class EventCache:
    """A fan-out hands consecutive streams the same payload object: parse it once for all, and
    for the common stream (one channel) build its bytes, `id:` lines included, once per epoch."""

    __slots__ = ("_events", "_payload", "_single")

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._events: list[Event] = []
        self._single: dict[tuple[str, str], tuple[bytes, int] | None] = {}

    def events_for(self, payload: bytes) -> list[Event]:
        if payload is not self._payload:
            self._events = events_of(payload)
            self._payload = payload
            self._single = {}
        return self._events

    def single_channel(self, payload: bytes, channel: str, epoch: str) -> tuple[bytes, int] | None:
        """(bytes, last offset) when the payload is publications of `channel` only, else None."""
        events = self.events_for(payload)
        key = (channel, epoch)
        if key not in self._single:
            self._single[key] = _publications_with_ids(events, channel, epoch)
        return self._single[key]


def id_field(channel: str, offset: int, epoch: str) -> str:
    """One channel's part of an event id: `CHANNEL=OFFSET.EPOCH`, the name percent-encoded."""
    return f"{quote(channel, safe='')}={offset}.{epoch}"


def _publications_with_ids(events: list[Event], channel: str, epoch: str) -> tuple[bytes, int] | None:
    out: list[bytes] = []
    offset = 0
    for event in events:
        if event.channel != channel or event.offset is None or event.subscribed is not None or event.reply_id:
            return None
        offset = event.offset
        out.append(b"id: %s\n" % id_field(channel, offset, epoch).encode())
        out.append(event.body)
    return (b"".join(out), offset) if out else None


def parse_last_event_id(value: str | None) -> dict[str, protocol.StreamPosition]:
    """Positions from a `Last-Event-ID` (`CHANNEL=OFFSET.EPOCH&...`, channel percent-encoded).
    Anything malformed counts as no position at all: the stream starts live (never an error)."""
    if not value:
        return {}
    try:
        fields = parse_qsl(value, strict_parsing=True, max_num_fields=MAX_ID_CHANNELS)
    except ValueError:
        return {}
    positions: dict[str, protocol.StreamPosition] = {}
    for channel, position in fields:
        offset, dot, epoch = position.partition(".")
        if not dot or not offset.isdigit() or len(offset) > 16 or not EPOCH.fullmatch(epoch):
            return {}
        positions[channel] = protocol.StreamPosition(int(offset), epoch)
    return positions


class SseStream(SessionStream):
    """One EventSource: its session, its channels' positions, and their `id:`."""

    transport_name = "sse"
    content_type = "text/event-stream; charset=utf-8"

    def __init__(
        self,
        context: StreamContext,
        cache: EventCache,
        request: UpgradeRequest,
        channels: list[str],
        token: str | None,
        since: dict[str, protocol.StreamPosition],
        address: str,
    ) -> None:
        super().__init__(context.hub, context.admission, address, request.headers.get("origin"))
        self._context = context
        self._cache = cache
        self._request = request
        self._channels = channels
        self._token = token
        self._since = since
        self._positions: dict[str, tuple[int, str]] = {}  # channel -> (offset, epoch)
        self._replies: dict[int, asyncio.Future[bytes]] = {}
        self._said_disconnect = False

    # ---- opening: connect, then subscribe each channel -------------------------------------

    async def open(self) -> None:
        connection = self.connection
        assert connection is not None
        context = self._context
        headers = self._request.headers
        app = application_for(
            context.hooks, self.hub, Peer("sse", peer_ip(connection), headers), context.forwarded_headers
        )
        loop = asyncio.get_running_loop()
        self.session = session = Session(
            self.hub, StreamSink(self, connection), verifier=context.verifier, call_later=loop.call_later, app=app
        )
        connect: dict[str, object] = {"name": "sse"}
        if self._token:
            connect["token"] = self._token
        server_side = {channel: p for channel, p in self._since.items() if channel not in self._channels}
        if server_side:
            connect["subs"] = {c: {"offset": p.offset, "epoch": p.epoch} for c, p in server_side.items()}
        if not await self._run(CONNECT_ID, "connect", connect):
            return
        for index, channel in enumerate(self._channels, start=CONNECT_ID + 1):
            params: dict[str, object] = {"channel": channel}
            since = self._since.get(channel)
            if since is not None:
                params["since"] = {"offset": since.offset, "epoch": since.epoch}
            if not await self._run(index, "subscribe", params, channel):
                return
        if session.state is not SessionState.CLOSED:
            self.send_head()

    async def _run(self, command_id: int, method: str, params: dict[str, object], channel: str = "") -> bool:
        """Run one of the stream's own commands; False (the stream refused or ended) on an error."""
        assert self.session is not None
        reply = asyncio.get_running_loop().create_future()
        self._replies[command_id] = reply
        line = protocol.encode({"id": command_id, method: params})
        for command in protocol.decode_frame(line):
            await self.session.handle(command)
        answer = await reply
        error = _decode_object(answer).get("error")
        if error is None:
            return True
        body = msgspec.json.decode(error, type=protocol.ErrorBody)
        if body.code == ErrorCode.ALREADY_SUBSCRIBED:  # the token's `channels` subscribed it already
            return True
        if body.temporary:  # come back later: a stream that says so, and EventSource retries
            too_many = body.code == ErrorCode.TOO_MANY_REQUESTS
            code = DisconnectCode.TOO_MANY_REQUESTS if too_many else DisconnectCode.APPLICATION_UNAVAILABLE
            self.close(code, body.message)
        else:
            extra = {"channel": channel} if channel else {}
            self.refuse(_status_for(body.code), error_body(body.code, body.message, **extra))
        return False

    # ---- the stream ---------------------------------------------------------------------

    def preamble(self) -> bytes:
        retry = self.hub.settings.sse_retry * random.uniform(0.5, 1.5)  # a restart's crowd spreads out
        return b"retry: %d\n\n" % int(retry * 1000)

    def encode_payload(self, payload: bytes) -> bytes:
        if len(self._positions) == 1 and not self._replies:  # the fan-out path: shared bytes
            ((channel, (_, epoch)),) = self._positions.items()
            shared = self._cache.single_channel(payload, channel, epoch)
            if shared is not None:
                data, offset = shared
                self._positions[channel] = (offset, epoch)
                return data
        out: list[bytes] = []
        for event in self._cache.events_for(payload):
            if event.reply_id is not None:
                self._on_reply(event, out)
                continue
            self._append(event, out)
        return b"".join(out)

    def _on_reply(self, event: Event, out: list[bytes]) -> None:
        waiter = self._replies.pop(event.reply_id or 0, None)
        if waiter is None:
            return
        message = _decode_object(event.reply)
        result = message.get("subscribe")
        if result is not None:
            channel = self._channels[(event.reply_id or 0) - CONNECT_ID - 1]
            for subscribed in subscribed_events(channel, _decode_subscribe(result)):
                self._append(subscribed, out)
        if not waiter.done():
            waiter.set_result(event.reply)

    def _append(self, event: Event, out: list[bytes]) -> None:
        channel = event.channel
        moved = False
        if channel is not None:
            if event.subscribed is not None:
                epoch = event.subscribed.epoch
                if epoch is not None and event.offset is not None:
                    self._positions[channel] = (event.offset, epoch)
                    moved = True
            elif event.offset is not None and channel in self._positions:
                self._positions[channel] = (event.offset, self._positions[channel][1])
                moved = True
            elif event.unsubscribed and self._positions.pop(channel, None) is not None:
                moved = True
        if event.disconnect:
            self._said_disconnect = True
        if moved:
            event_id = "&".join(id_field(name, offset, epoch) for name, (offset, epoch) in self._positions.items())
            out.append(b"id: %s\n" % event_id.encode())
        out.append(event.body)

    def closing_bytes(self, code: int, reason: str) -> bytes:
        if self._said_disconnect:
            return b""
        self._said_disconnect = True
        data = protocol.encode(protocol.Disconnect(code, reason, close_code_allows_reconnect(code)))
        return _event("disconnect", data)

    def keepalive_bytes(self) -> bytes:
        return KEEPALIVE


STATUS_FOR_ERROR = {
    ErrorCode.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.TOKEN_EXPIRED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    ErrorCode.UNKNOWN_CHANNEL: HTTPStatus.NOT_FOUND,
    ErrorCode.LIMIT_EXCEEDED: HTTPStatus.FORBIDDEN,
}


def _status_for(code: int) -> HTTPStatus:
    try:
        return STATUS_FOR_ERROR.get(ErrorCode(code), HTTPStatus.BAD_REQUEST)
    except ValueError:  # an application's own refusal code (1000-1999)
        return HTTPStatus.FORBIDDEN


class SseEndpoint:
    """Makes the stream for each `GET /connection/sse`, or the answer that refuses it."""

    def __init__(self, context: StreamContext) -> None:
        self._context = context
        self._cache = EventCache()

    def exchange_for(
        self, connection: WebSocketConnection, request: UpgradeRequest, query: str
    ) -> Response | SseStream:
        settings = self._context.hub.settings
        if request.method != "GET":
            body = error_body(ErrorCode.BAD_REQUEST, "Server-Sent Events use GET")
            return whole_response(HTTPStatus.METHOD_NOT_ALLOWED, body, [("Allow", "GET")])
        params = parse_qsl(query, max_num_fields=settings.max_channels_per_connection + 8)
        channels = list(dict.fromkeys(value for name, value in params if name == "channel"))
        if not channels:
            return _json(HTTPStatus.BAD_REQUEST, error_body(ErrorCode.BAD_REQUEST, "name a channel: ?channel=NAME"))
        if len(channels) > settings.max_channels_per_connection:
            return _json(HTTPStatus.BAD_REQUEST, error_body(ErrorCode.LIMIT_EXCEEDED, "too many channels"))
        token = next((value for name, value in params if name == "token"), None)
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        last_event_id = request.headers.get("last-event-id") or next(
            (value for name, value in params if name == "last_event_id"), None
        )
        origin = request.headers.get("origin")
        address = peer_ip(connection)
        if self._context.is_draining():
            return come_back_later(DisconnectCode.GOING_AWAY, "server is shutting down", origin, settings.sse_retry)
        refused = self._context.admission.check(origin, request.headers.get("host"), address)
        if refused is not None:
            status, text = refused
            if status is HTTPStatus.TOO_MANY_REQUESTS:
                return come_back_later(DisconnectCode.TOO_MANY_REQUESTS, text.strip(), origin, settings.sse_retry * 5)
            return _json(status, error_body(ErrorCode.PERMISSION_DENIED, text.strip()))
        return SseStream(
            self._context, self._cache, request, channels, token, parse_last_event_id(last_event_id), address
        )


def come_back_later(code: int, reason: str, origin: str | None, retry: float) -> Response:
    """A whole event stream that says "disconnected, retry in a while": EventSource reconnects
    after `retry:` (an HTTP error status would make it give up for good)."""
    data = protocol.encode(protocol.Disconnect(code, reason, True))
    body = b"retry: %d\n\n" % int(retry * 1000 * random.uniform(0.5, 1.5)) + _event("disconnect", data)
    headers = [("Cache-Control", "no-cache, no-store"), *cors_headers(origin)]
    return whole_response(HTTPStatus.OK, body, headers, "text/event-stream; charset=utf-8")


def _json(status: HTTPStatus, body: bytes) -> Response:
    return whole_response(status, body)
