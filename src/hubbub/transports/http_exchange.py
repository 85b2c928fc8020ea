"""What SSE and HTTP streaming share: a Session whose frames go into a streamed HTTP response.

The public port's own HTTP/1.1 parser (handshake.py) hands a request it will not upgrade to an
`HttpExchange` (wsconnection.py). `SessionStream` is the exchange for a streamed response: it
answers once with a head and no length (the body ends when the connection does), then writes
what the session's outbox flushes, encoded by its subclass (SSE events, or JSON lines). Slow
readers are handled by the outbox as on WebSockets (byte-bounded: cut with 3008, or conflated
per namespace); the keepalive's tick writes a keep-alive so proxies keep idle streams, and drops
a reader whose buffer has grown past `max_outbox_bytes` with nothing else to write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from websockets.datastructures import Headers
from websockets.http11 import Response

from hubbub import protocol
from hubbub.core.auth import TokenVerifier
from hubbub.core.hooks import HookRunner
from hubbub.core.hub import Hub
from hubbub.core.session import Session
from hubbub.errors import DisconnectCode
from hubbub.transports.admission import Admission
from hubbub.transports.handshake import http_date
from hubbub.transports.wsconnection import WebSocketConnection

log = logging.getLogger("hubbub.stream")

STREAM_HEADERS = (
    ("Cache-Control", "no-cache, no-store"),
    ("X-Accel-Buffering", "no"),  # nginx: do not buffer this response
    ("X-Content-Type-Options", "nosniff"),
)


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What a stream's session needs of the server (the WebSocket endpoint has the same)."""

    hub: Hub
    verifier: TokenVerifier | None
    hooks: HookRunner | None
    admission: Admission
    forwarded_headers: frozenset[str]
    is_draining: Callable[[], bool]


def response_head(status: HTTPStatus, headers: Sequence[tuple[str, str]], server: str) -> bytes:
    """An HTTP/1.1 response head that closes the connection after the body."""
    lines = [f"HTTP/1.1 {status.value} {status.phrase}", f"Date: {http_date()}", f"Server: {server}"]
    lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cors_headers(origin: str | None) -> list[tuple[str, str]]:
    """For an Origin the admission let through: a cross-origin page may read the response
    (EventSource with `withCredentials` too). Same-origin requests carry no Origin."""
    if origin is None:
        return []
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]


def error_body(code: int, message: str, **extra: str) -> bytes:
    """The JSON body of a refused request, shaped as an error reply: {"error":{"code","message"}}."""
    return protocol.encode({"error": {"code": code, "message": message, **extra}})


def whole_response(
    status: HTTPStatus, body: bytes, headers: Sequence[tuple[str, str]] = (), content_type: str = "application/json"
) -> Response:
    """A complete answer from the handshake parser (it closes the connection after it)."""
    fields = [("Content-Type", content_type), *headers, ("Content-Length", str(len(body)))]
    return Response(status.value, status.phrase, Headers(fields), body)


def answer(
    connection: WebSocketConnection,
    status: HTTPStatus,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> None:
    """A whole response from an exchange (past the handshake parser), then close."""
    transport = connection.transport
    if transport is None:
        return
    head = response_head(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
        connection.options.server_header,
    )
    transport.write(head + body)
    connection.end_response()


class StreamSink:
    """The outbox's sink: each flushed payload encoded by the stream and written at once."""

    __slots__ = ("_connection", "_stream")

    def __init__(self, stream: SessionStream, connection: WebSocketConnection) -> None:
        self._stream = stream
        self._connection = connection

    def write(self, payload: bytes) -> None:
        self._stream.write_payload(payload)

    def writable(self) -> bool:
        return not self._connection.paused

    def buffered_bytes(self) -> int:
        return self._stream.buffered_bytes()

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._connection.when_writable(callback)

    def close(self, code: int, reason: str) -> None:
        self._stream.close(code, reason)


class SessionStream:
    """A session on a streamed response; subclasses encode payloads and say how a stream ends."""

    transport_name = "stream"
    content_type = "application/octet-stream"

    def __init__(self, hub: Hub, admission: Admission, address: str, request_origin: str | None) -> None:
        self.hub = hub
        self._admission = admission
        self._address = address
        self._origin = request_origin
        self.connection: WebSocketConnection | None = None
        self.session: Session | None = None
        self.head_sent = False
        self._ended = False
        self._opening: asyncio.Task[None] | None = None
        self._pending_close: tuple[int, str] | None = None  # a close while `open` still decides
        self._early: list[bytes] = []  # written before the head: sent right after it
        self._early_bytes = 0

    # ---- what subclasses provide ----------------------------------------------------------

    def encode_payload(self, payload: bytes) -> bytes:
        """An outbox payload (JSON messages joined by "\\n") as this stream's bytes."""
        raise NotImplementedError

    def closing_bytes(self, code: int, reason: str) -> bytes:
        """What the stream says last before it ends (a WebSocket's close frame)."""
        raise NotImplementedError

    def keepalive_bytes(self) -> bytes:
        raise NotImplementedError

    async def open(self) -> None:
        """Run the stream's first commands; send the head (`send_head`) or refuse."""
        raise NotImplementedError

    # ---- the exchange ---------------------------------------------------------------------

    def start(self, connection: WebSocketConnection, body: bytes) -> None:
        self.connection = connection
        connection.request_done()
        self._admission.opened_address(self._address)
        self._opening = asyncio.ensure_future(self._open_safely())

    async def _open_safely(self) -> None:
        try:
            await self.open()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("opening a %s stream failed", self.transport_name)
            self.refuse(HTTPStatus.INTERNAL_SERVER_ERROR, error_body(100, "internal error"))
        finally:
            self._opening = None
            if self._pending_close is not None:
                self.close(*self._pending_close)

    def data_received(self, data: bytes) -> None:
        """A streamed response reads nothing more: what the client sends is dropped unread."""

    def send_head(self) -> None:
        """200 and the stream's headers, then `preamble` (once; before anything else is written)."""
        connection = self.connection
        if self.head_sent or self._ended or connection is None or connection.transport is None:
            return
        self.head_sent = True
        headers = [("Content-Type", self.content_type), *STREAM_HEADERS, *cors_headers(self._origin)]
        head = response_head(HTTPStatus.OK, headers, connection.options.server_header)
        early, self._early, self._early_bytes = self._early, [], 0
        connection.transport.write(b"".join([head, self.preamble(), *early]))

    def preamble(self) -> bytes:
        """The stream's first bytes, right after the head."""
        return b""

    def refuse(self, status: HTTPStatus, body: bytes) -> None:
        """Answer with an HTTP error instead of a stream (only before the head)."""
        connection = self.connection
        if self.head_sent or self._ended or connection is None:
            return
        self._ended = True
        if self.session is not None:
            self.session.disconnect(DisconnectCode.BAD_REQUEST, "refused", notify=False)
        answer(connection, status, body, cors_headers(self._origin))

    def write_raw(self, data: bytes) -> None:
        connection = self.connection
        if self._ended or connection is None or connection.transport is None or not data:
            return
        if not self.head_sent:  # the first commands' replies decide the head: hold what comes first
            self._early.append(data)
            self._early_bytes += len(data)
            return
        try:
            connection.transport.write(data)
        except Exception as exc:  # a transport closing under us: connection_lost follows
            log.debug("write to %s failed: %s", connection.remote_address, exc)

    def write_payload(self, payload: bytes) -> None:
        self.write_raw(self.encode_payload(payload))

    def buffered_bytes(self) -> int:
        connection = self.connection
        if connection is None or connection.transport is None:
            return self._early_bytes
        return connection.transport.get_write_buffer_size() + self._early_bytes

    def close(self, code: int, reason: str) -> None:
        """End the stream as a close with `code` would (the session's disconnect, or drain);
        before the head, as a stream that says so at once (the client retries, or not, by it)."""
        connection = self.connection
        if self._ended or connection is None:
            return
        if not self.head_sent and self._opening is not None:  # `open` may still refuse with a status
            self._pending_close = (code, reason)
            return
        self.send_head()
        self.write_raw(self.closing_bytes(code, reason))
        self._ended = True
        connection.end_response()

    def keepalive(self) -> None:
        if not self.head_sent or self._ended:
            return
        limit = self.hub.settings.max_outbox_bytes
        if limit is not None and self.buffered_bytes() > limit:  # keep-alives it never read: drop it
            self.hub.stats.slow_consumer_disconnects += 1
            if self.connection is not None:
                self.connection.abort()
            return
        self.write_raw(self.keepalive_bytes())

    def connection_lost(self) -> None:
        self._ended = True
        if self._opening is not None:
            self._opening.cancel()
        self.hub.spawn(self._clean_up(), f"closing a {self.transport_name} stream")

    async def _clean_up(self) -> None:
        try:
            if self.session is not None:
                self.session.closed(None, "")
                await self.hub.remove_session(self.session)
        except Exception:
            log.exception("cleaning up a %s stream failed", self.transport_name)
        finally:
            self.forget()
            self._admission.release(self._address)
            if self.connection is not None:
                self.connection.exchange_done()

    def forget(self) -> None:
        """Drop what refers to this stream from the outside (subclasses: the stream registry)."""
