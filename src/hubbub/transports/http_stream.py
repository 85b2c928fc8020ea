"""HTTP streaming with commands: hubbub.js's fallback where WebSockets cannot go.

`POST /connection/stream` opens a streamed response of JSON lines: first `{"stream":{"id":ID}}`,
then the hubbub.json.v1 replies and pushes a WebSocket would carry (one line each), and last
`{"closed":{"code","reason"}}` where a WebSocket would get its close frame. The client sends
its commands with `POST /connection/stream/send` (a first line `{"stream":ID,"seq":N}`, then
one WebSocket message's text). That POST may reach any node behind a load balancer, sticky or
not: a node that does not hold the stream passes it on through the broker to the one that does.
`seq` (1, 2, ...) puts messages back in order when one node's path overtakes another's, and
drops a retried POST's copy (docs/protocol.md#http-streaming).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from http import HTTPStatus

import msgspec
from websockets.http11 import Response

from hubbub import protocol, wire
from hubbub.core.application import Peer, application_for
from hubbub.core.hub import Control
from hubbub.core.ratelimit import KeyedBuckets
from hubbub.core.session import Session
from hubbub.errors import DisconnectCode, ErrorCode
from hubbub.transports.admission import peer_ip
from hubbub.transports.handshake import UpgradeRequest
from hubbub.transports.http_exchange import (
    SessionStream,
    StreamContext,
    StreamSink,
    answer,
    cors_headers,
    error_body,
    whole_response,
)
from hubbub.transports.messages import run_message
from hubbub.transports.wsconnection import WebSocketConnection

log = logging.getLogger("hubbub.stream")

STREAM_PATH = "/connection/stream"
SEND_PATH = "/connection/stream/send"
MAX_ENVELOPE_BYTES = 256  # the {"stream","seq"} line before the message
KEEPALIVE = b"\n"  # an empty line: clients skip it


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    seq: int


_decode_envelope = msgspec.json.Decoder(Envelope).decode


class CommandStream(SessionStream):
    """One client's stream: its session, fed the messages its POSTs carry, in `seq` order."""

    transport_name = "http-stream"
    content_type = "application/x-ndjson"

    def __init__(self, context: StreamContext, request: UpgradeRequest, address: str) -> None:
        super().__init__(context.hub, context.admission, address, request.headers.get("origin"))
        self._context = context
        self._request = request
        self.stream_id = secrets.token_urlsafe(18)  # a bearer secret: who knows it speaks for the client
        self._next_seq = 1
        self._ahead: dict[int, str] = {}
        self._gap_timer: asyncio.TimerHandle | None = None
        self._inbox: deque[str] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._protocol = wire.for_subprotocol(None)

    async def open(self) -> None:
        connection = self.connection
        assert connection is not None
        context = self._context
        headers = self._request.headers
        peer = Peer("http-stream", peer_ip(connection), headers)
        app = application_for(context.hooks, self.hub, peer, context.forwarded_headers)
        loop = asyncio.get_running_loop()
        self.session = Session(
            self.hub, StreamSink(self, connection), verifier=context.verifier, call_later=loop.call_later, app=app
        )
        self.hub.streams[self.stream_id] = self
        self.send_head()

    def preamble(self) -> bytes:
        return protocol.encode({"stream": {"id": self.stream_id}}) + b"\n"

    def encode_payload(self, payload: bytes) -> bytes:
        return payload + b"\n"  # the internal form is hubbub.json.v1's own: nothing to convert

    def closing_bytes(self, code: int, reason: str) -> bytes:
        return protocol.encode({"closed": {"code": code, "reason": reason}}) + b"\n"

    def keepalive_bytes(self) -> bytes:
        return KEEPALIVE

    def forget(self) -> None:
        self.hub.streams.pop(self.stream_id, None)
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        self._ahead.clear()
        self._inbox.clear()

    # ---- messages in --------------------------------------------------------------------

    def receive(self, seq: int, text: str) -> None:
        """The `seq`-th message of the client, from a POST to this node or through the broker."""
        session = self.session
        if session is None or seq < self._next_seq or seq in self._ahead:
            return  # a retried POST's copy
        limit = self.hub.settings.max_queued_messages
        if seq > self._next_seq:  # overtaken: an earlier one is still on its way (through the broker)
            if len(self._ahead) >= limit:
                session.disconnect(DisconnectCode.BAD_REQUEST, "too many stream messages out of order")
                return
            self._ahead[seq] = text
            if self._gap_timer is None:
                timeout = self.hub.settings.stream_reorder_timeout
                self._gap_timer = asyncio.get_running_loop().call_later(timeout, self._gap_expired)
            return
        self._enqueue(text)
        while self._next_seq in self._ahead:
            self._enqueue(self._ahead.pop(self._next_seq))
        if not self._ahead and self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        if len(self._inbox) > limit:  # a client POSTing faster than its commands run
            session.disconnect(DisconnectCode.TOO_MANY_REQUESTS, "too many requests")

    def _enqueue(self, text: str) -> None:
        self._next_seq += 1
        self._inbox.append(text)
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._run_inbox())

    async def _run_inbox(self) -> None:
        session = self.session
        assert session is not None
        try:
            while self._inbox:
                await run_message(session, self._protocol, self._inbox.popleft())
        except Exception:
            log.exception("handling a stream message failed")
            session.disconnect(DisconnectCode.INTERNAL, "internal error")
        finally:
            self._worker = None

    def _gap_expired(self) -> None:
        self._gap_timer = None
        if self._ahead and self.session is not None:
            self.session.disconnect(DisconnectCode.FORCE_RECONNECT, "a command was lost on its way: reconnect")


class SendExchange:
    """`POST /connection/stream/send`: read the body (Content-Length, bounded), hand the message
    to its stream here or through the broker, answer 202."""

    def __init__(self, endpoint: HttpStreamEndpoint, request: UpgradeRequest, length: int) -> None:
        self._endpoint = endpoint
        self._origin = request.headers.get("origin")
        self._length = length
        self._body = bytearray()
        self._connection: WebSocketConnection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, connection: WebSocketConnection, body: bytes) -> None:
        self._connection = connection
        self.data_received(body)

    def data_received(self, data: bytes) -> None:
        if self._task is not None or self._connection is None:
            return
        self._body += data[: self._length - len(self._body)]
        if len(self._body) >= self._length:
            self._connection.request_done()
            self._task = asyncio.ensure_future(self._deliver(bytes(self._body)))

    async def _deliver(self, body: bytes) -> None:
        status, reply = await self._endpoint.deliver(body)
        if self._connection is not None:
            answer(self._connection, status, reply, cors_headers(self._origin))

    def connection_lost(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.add_done_callback(lambda _: self._done())
        else:
            self._done()

    def _done(self) -> None:
        if self._connection is not None:
            self._connection.exchange_done()

    def close(self, code: int, reason: str) -> None:
        if self._task is None and self._connection is not None:  # still reading at drain
            answer(self._connection, HTTPStatus.SERVICE_UNAVAILABLE, error_body(ErrorCode.INTERNAL, reason))

    def keepalive(self) -> None:
        pass


class HttpStreamEndpoint:
    """Serves both paths: the stream itself and the POSTs that carry its commands."""

    def __init__(self, context: StreamContext) -> None:
        self._context = context
        settings = context.hub.settings
        self._sends = KeyedBuckets(settings.stream_send_rate_per_ip, settings.stream_send_burst_per_ip)
        self._local_only = settings.broker == "memory"  # no other node could hold a stream

    def exchange_for(
        self, connection: WebSocketConnection, request: UpgradeRequest, path: str
    ) -> Response | CommandStream | SendExchange:
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":  # a cross-origin page's preflight
            return _preflight(origin, self._context, request)
        if request.method != "POST":
            return _refusal(HTTPStatus.METHOD_NOT_ALLOWED, ErrorCode.BAD_REQUEST, "use POST", origin)
        address = peer_ip(connection)
        if path == STREAM_PATH:
            if self._context.is_draining():
                return _refusal(HTTPStatus.SERVICE_UNAVAILABLE, ErrorCode.INTERNAL, "server is shutting down", origin)
            if _content_length(request) not in (0, None):
                return _refusal(HTTPStatus.BAD_REQUEST, ErrorCode.BAD_REQUEST, "the stream takes no body", origin)
            refused = self._context.admission.check(origin, request.headers.get("host"), address)
            if refused is not None:
                return _refusal(refused[0], ErrorCode.LIMIT_EXCEEDED, refused[1].strip(), origin)
            return CommandStream(self._context, request, address)
        length = _content_length(request)
        if "transfer-encoding" in request.headers or length is None:
            return _refusal(HTTPStatus.LENGTH_REQUIRED, ErrorCode.BAD_REQUEST, "send a Content-Length", origin)
        limit = self._context.hub.settings.max_message_bytes
        if limit is not None and length > limit + MAX_ENVELOPE_BYTES:
            return _refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, ErrorCode.LIMIT_EXCEEDED, "message too big", origin)
        refused = self._context.admission.check_origin(origin, request.headers.get("host"))
        if refused is not None:
            return _refusal(refused[0], ErrorCode.PERMISSION_DENIED, refused[1].strip(), origin)
        if not self._sends.take(address):
            self._context.hub.count_limit_hit("stream_sends_per_ip")
            return _refusal(HTTPStatus.TOO_MANY_REQUESTS, ErrorCode.TOO_MANY_REQUESTS, "slow down", origin)
        return SendExchange(self, request, length)

    async def deliver(self, body: bytes) -> tuple[HTTPStatus, bytes]:
        """Hand one POSTed message to its stream: (status, JSON body) for the POST's answer."""
        head, newline, message = body.partition(b"\n")
        try:
            if not newline or len(head) > MAX_ENVELOPE_BYTES:
                raise ValueError('the first line is {"stream":ID,"seq":N}')
            envelope = _decode_envelope(head)
            text = message.decode()
            if envelope.seq < 1:
                raise ValueError("seq counts from 1")
        except (ValueError, msgspec.DecodeError) as exc:
            return HTTPStatus.BAD_REQUEST, error_body(ErrorCode.BAD_REQUEST, f"bad request: {exc}")
        hub = self._context.hub
        local = hub.streams.get(envelope.stream)
        if local is not None:
            hub.stats.stream_messages["local"] += 1
            local.receive(envelope.seq, text)
        elif self._local_only:
            return HTTPStatus.NOT_FOUND, error_body(ErrorCode.NOT_CONNECTED, "no such stream (it ended)")
        else:
            hub.stats.stream_messages["broker"] += 1
            try:
                await hub.control(Control(kind="stream", stream=envelope.stream, seq=envelope.seq, text=text))
            except Exception as exc:
                log.warning("passing a stream message on failed: %s", exc)
                return HTTPStatus.SERVICE_UNAVAILABLE, error_body(ErrorCode.INTERNAL, "broker unavailable")
        return HTTPStatus.ACCEPTED, b"{}"


def _content_length(request: UpgradeRequest) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    return int(value) if value.isdigit() and len(value) < 16 else -1


def _refusal(status: HTTPStatus, code: int, message: str, origin: str | None) -> Response:
    return whole_response(status, error_body(code, message), cors_headers(origin))


def _preflight(origin: str | None, context: StreamContext, request: UpgradeRequest) -> Response:
    """A cross-origin page's fetch asks first; allowed Origins only (the allow-list)."""
    if context.admission.check_origin(origin, request.headers.get("host")) is not None:
        return whole_response(HTTPStatus.FORBIDDEN, error_body(ErrorCode.PERMISSION_DENIED, "origin not allowed"))
    headers = [*cors_headers(origin), ("Access-Control-Allow-Methods", "POST"), ("Access-Control-Max-Age", "600")]
    headers.append(("Access-Control-Allow-Headers", "Content-Type"))
    return whole_response(HTTPStatus.NO_CONTENT, b"", headers)
