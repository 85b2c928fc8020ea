"""The public WebSocket endpoint, on the `websockets` library (DESIGN.md says why).

`websockets` owns the RFC 6455 work: handshake, masking, UTF-8 checks, max frame size (close
1009), keepalive pings (close 1011 when no pong). This module adapts a connection to a
core Session: frames in -> commands, outbox flushes -> one text frame per write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from http import HTTPStatus
from importlib import resources
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState
from websockets.typing import Subprotocol

from hubbub import protocol
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.core.hub import Hub
from hubbub.core.ratelimit import KeyedBuckets
from hubbub.core.session import Session
from hubbub.errors import ConfigError, DisconnectCode, ProtocolError
from hubbub.transports.keepalive import Keepalive

log = logging.getLogger("hubbub.websocket")

WEBSOCKET_PATH = "/connection/websocket"
ECHO_PATH = "/echo"
DEV_TOKEN_PATH = "/dev/token"
DEV_TOKEN_TTL = 3600
DEV_USER = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # safe inside channel names such as dm:alice,bob
PAGE_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Pages the public port serves with no build step: path -> (file in hubbub/web, content type).
PAGES = {
    "/hubbub.js": ("hubbub.js", "application/javascript; charset=utf-8"),
    "/chat": ("chat.html", "text/html; charset=utf-8"),
    "/chat/chat.js": ("chat.js", "application/javascript; charset=utf-8"),
    "/chat/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/ticker": ("ticker.html", "text/html; charset=utf-8"),
    "/ticker/ticker.js": ("ticker.js", "application/javascript; charset=utf-8"),
    "/ticker/ticker.css": ("ticker.css", "text/css; charset=utf-8"),
}
HANDSHAKE_DONE = Request(WEBSOCKET_PATH, Headers())
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 section 5.5: control frame payload <= 125 bytes


def close_reason(text: str) -> str:
    encoded = text.encode()[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore")


OP_TEXT = 0x1
OP_BINARY = 0x2


def data_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final RFC 6455 data frame (a server never masks, section 5.1)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def text_frame(payload: bytes) -> bytes:
    return data_frame(OP_TEXT, payload)


RSV1 = 0x40  # permessage-deflate: this message is compressed (RFC 7692 section 6)
SYNC_TAIL = b"\x00\x00\xff\xff"
DEFLATE_MEM_LEVEL = 5  # the websockets default: less memory per compressor


def deflated_frame(opcode: int, payload: bytes, window_bits: int) -> bytes:
    """A compressed permessage-deflate message without context takeover (RFC 7692 section 7.2.1):
    the same bytes for every connection that negotiated this window, so built once per fan-out."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, DEFLATE_MEM_LEVEL)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = bytearray(data_frame(opcode, data[:-4] if data.endswith(SYNC_TAIL) else data))
    frame[0] |= RSV1
    return bytes(frame)


class FrameCache:
    """The last outbox payload framed, so a fan-out converts and frames it once for every
    connection of one encoding (JSON text frames, or MessagePack binary frames)."""

    __slots__ = ("_convert", "_deflated", "_deflated_key", "_opcode", "data", "frame", "payload")

    def __init__(self, opcode: int = OP_TEXT, convert: Callable[[bytes], bytes] | None = None) -> None:
        self._opcode = opcode
        self._convert = convert
        self.payload = b""
        self.data = b""
        self.frame = data_frame(opcode, b"")
        self._deflated_key: tuple[bytes, int] = (b"", 0)
        self._deflated = b""

    @property
    def binary(self) -> bool:
        return self._opcode == OP_BINARY

    def _load(self, payload: bytes) -> None:
        self.payload = payload
        self.data = self._convert(payload) if self._convert is not None else payload
        self.frame = data_frame(self._opcode, self.data)

    def frame_for(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self._load(payload)
        return self.frame

    def data_for(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self._load(payload)
        return self.data

    def deflated_frame_for(self, payload: bytes, window_bits: int) -> bytes:
        payload_seen, bits_seen = self._deflated_key
        if payload is not payload_seen or window_bits != bits_seen:
            self._deflated = deflated_frame(self._opcode, self.data_for(payload), window_bits)
            self._deflated_key = (payload, window_bits)
        return self._deflated


class WebSocketSink:
    """Writes outbox frames straight into one `websockets` connection's transport.

    Bypasses `Connection.send()` (a coroutine, one await per frame) and even `send_text`
    (a Frame object and a serialisation per connection): the flusher hands consecutive
    connections the same payload object, framed once by `FrameCache`. Raw writes are safe only
    while the connection is OPEN, no fragmented send is in progress and the protocol has nothing
    queued. With permessage-deflate, frames under `compression_threshold` bytes go uncompressed
    (allowed per message, RFC 7692 section 6) and larger ones are compressed once per fan-out
    (the server never takes over context); anything else goes through `send_text`/`send_binary`,
    as `websockets.broadcast()` does.
    """

    __slots__ = ("_connection", "_deflate_bits", "_frames", "_tasks", "_threshold")

    def __init__(self, connection: ServerConnection, frames: FrameCache, compression_threshold: int = 0) -> None:
        self._connection = connection
        self._frames = frames
        extensions = connection.protocol.extensions
        # Frames shorter than this go out raw and uncompressed: all of them without an extension.
        self._threshold = compression_threshold if extensions else sys.maxsize
        self._deflate_bits = 0
        if len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
            deflate = extensions[0]
            if deflate.local_no_context_takeover and deflate.local_max_window_bits >= 9:  # zlib cannot do 8
                self._deflate_bits = deflate.local_max_window_bits
        self._tasks: set[asyncio.Future[None]] = set()

    def write(self, payload: bytes) -> None:
        connection = self._connection
        protocol = connection.protocol
        if protocol.state is not WsState.OPEN:
            return
        try:
            if connection.send_in_progress is None and not protocol.writes:
                if len(payload) < self._threshold:
                    connection.transport.write(self._frames.frame_for(payload))
                    return
                if self._deflate_bits:
                    connection.transport.write(self._frames.deflated_frame_for(payload, self._deflate_bits))
                    return
            data = self._frames.data_for(payload)
            if self._frames.binary:
                protocol.send_binary(data)
            else:
                protocol.send_text(data)
            connection.send_data()
        except Exception as exc:  # a dead transport must not abort the fan-out
            log.debug("write to %s failed: %s", connection.id, exc)

    def writable(self) -> bool:
        return not self._connection.paused

    def buffered_bytes(self) -> int:
        transport = self._connection.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._spawn(self._wait_writable(callback))

    async def _wait_writable(self, callback: Callable[[], None]) -> None:
        try:
            await self._connection.drain()
        except Exception:  # connection lost: the callback finds the outbox closed
            pass
        callback()

    def close(self, code: int, reason: str) -> None:
        self._spawn(self._connection.close(code, close_reason(reason)))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for a close this sink started, so its close code is the one the peer sees."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def enable_fast_open(sockets: Iterable[socket.socket], queue: int) -> None:
    """TCP Fast Open (RFC 7413): a returning client's SYN carries its upgrade request, saving a
    round trip per reconnect. The kernel also needs net.ipv4.tcp_fastopen with bit 2 set."""
    option = getattr(socket, "TCP_FASTOPEN", None)
    if option is None:
        raise ConfigError("setting 'tcp_fastopen': this platform has no TCP Fast Open")
    for listening in sockets:
        listening.setsockopt(socket.IPPROTO_TCP, option, queue)


def deflate_factory() -> ServerPerMessageDeflateFactory:
    """permessage-deflate where the server never takes over context: each compressed message
    stands alone, so one compression serves every subscriber (the client may keep its own)."""
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, compress_settings={"memLevel": DEFLATE_MEM_LEVEL}
    )


class GuardedConnection(ServerConnection):
    """A connection that stops reading from a peer who does not read what it provokes.

    `websockets` answers every ping with a pong at once. A peer that floods pings and never
    reads would grow our write buffer without bound; past `max_unread_bytes` we stop reading
    its socket until the buffer drains, so TCP pushes back on the flooder instead.
    """

    max_unread_bytes = 1024 * 1024
    _holding_reads = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        transport = self.transport
        if not self._holding_reads and transport.get_write_buffer_size() > self.max_unread_bytes:
            self._holding_reads = True
            transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._holding_reads:
            self._holding_reads = False
            if not self.recv_messages.paused:  # the message queue may hold reads paused too
                self.transport.resume_reading()


def origin_allowed(origin: str | None, host: str | None, allowed: list[str] | None) -> bool:
    """Cross-site WebSocket hijacking defence (RFC 6455 section 10.2).

    No Origin header: not a browser, allowed. With an allow-list: exact origins, `*` for any,
    or `https://*.example.com` for subdomains. Without one: the Origin's host:port must be the
    Host the client asked for (same host).
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if allowed is None:
        if host is None:
            return False
        origin_host = origin.split("://", 1)[-1]
        return origin_host == host.strip().lower()
    for pattern in allowed:
        if pattern == "*" or pattern == origin:
            return True
        if "://*." in pattern:
            scheme, suffix = pattern.split("://*.", 1)
            if origin.startswith(scheme + "://") and origin.endswith("." + suffix):
                return True
    return False


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The client's first offer we speak (JSON or MessagePack); offering nothing means JSON."""
    if not offered:
        return None
    for name in offered:
        if name in protocol.SUBPROTOCOLS:
            return Subprotocol(name)
    raise NegotiationError(f"unsupported subprotocol; this server speaks {', '.join(protocol.SUBPROTOCOLS)}")


class WebSocketEndpoint:
    """Serves `/connection/websocket` and `GET /health` on the public port."""

    def __init__(self, hub: Hub, verifier: TokenVerifier | None, is_draining: Callable[[], bool]) -> None:
        self.hub = hub
        self.verifier = verifier
        self.is_draining = is_draining
        self.server: Server | None = None
        settings = hub.settings
        self._allowed_origins = (
            [entry.strip().lower().rstrip("/") for entry in settings.allowed_origins.split(",") if entry.strip()]
            if settings.allowed_origins
            else None
        )
        self._attempts = KeyedBuckets(settings.connect_rate_per_ip, settings.connect_burst_per_ip)
        self._open_per_ip: Counter[str] = Counter()
        self._keepalive = (
            Keepalive(settings.ping_interval, settings.ping_timeout) if settings.ping_interval is not None else None
        )
        self._frames = FrameCache()
        self._msgpack_frames = FrameCache(OP_BINARY, protocol.msgpack_from_json_lines)

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> Server:
        settings = self.hub.settings
        connection_class = type(
            "BoundGuardedConnection", (GuardedConnection,), {"max_unread_bytes": settings.max_outbox_bytes}
        )
        self.server = await serve(
            self.handle,
            host,
            port,
            ssl=ssl,
            create_connection=connection_class,
            process_request=self.process_request,
            select_subprotocol=select_subprotocol,
            compression=None,
            extensions=[deflate_factory()] if settings.compression else None,
            max_size=settings.max_message_bytes,
            open_timeout=settings.handshake_timeout,
            ping_interval=None,  # one shared timer instead of a task per connection (keepalive.py)
            ping_timeout=None,
            server_header="hubbub",
            reuse_port=settings.reuse_port or None,
        )
        if settings.tcp_fastopen:
            enable_fast_open(self.server.sockets, settings.tcp_fastopen)
        if self._keepalive is not None:
            self._keepalive.start()
        return self.server

    def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        page = PAGES.get(path)
        if page is not None:
            return _file_response(*page)
        if path == DEV_TOKEN_PATH and self.hub.settings.dev:
            return self._dev_token(query)
        if path == "/health":
            status = HTTPStatus.SERVICE_UNAVAILABLE if self.is_draining() else HTTPStatus.OK
            return _json_response(status, b'{"status":"%s"}' % (b"draining" if self.is_draining() else b"ok"))
        is_echo = path == ECHO_PATH and self.hub.settings.test_echo_endpoint
        if path != WEBSOCKET_PATH and not is_echo:
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found; the WebSocket endpoint is {WEBSOCKET_PATH}\n")
        if self.is_draining():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down\n")
        if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), self._allowed_origins):
            self.hub.count_limit_hit("origin")
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        address = _peer_ip(connection)
        limit = self.hub.settings.max_connections_per_ip
        if limit is not None and self._open_per_ip[address] >= limit:
            self.hub.count_limit_hit("connections_per_ip")
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many connections from your address\n")
        if not self._attempts.take(address):
            self.hub.count_limit_hit("connection_attempts_per_ip")
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many connection attempts, slow down\n")
        return None

    def _dev_token(self, query: str) -> Response:
        """DEVELOPMENT ONLY (setting `dev`): a token for any user name asked for."""
        params = parse_qs(query)
        user = params.get("user", [""])[0]
        if not DEV_USER.match(user):
            body = b'{"error":{"code":107,"message":"user: 1 to 32 letters, digits, _ or -"}}'
            return _json_response(HTTPStatus.BAD_REQUEST, body)
        secret = self.hub.settings.token_secret
        assert secret is not None  # Server makes one when `dev` is on
        try:  # short-lived tokens let developers watch the refresh flow
            ttl = min(max(int(params.get("ttl", [DEV_TOKEN_TTL])[0]), 1), DEV_TOKEN_TTL)
        except ValueError:
            ttl = DEV_TOKEN_TTL
        token = mint_token(secret, user, ttl=ttl)
        return _json_response(HTTPStatus.OK, protocol.encode({"token": token, "user": user, "ttl": ttl}))

    async def handle(self, connection: ServerConnection) -> None:
        address = _peer_ip(connection)
        self._open_per_ip[address] += 1
        is_echo = connection.request is not None and connection.request.path.split("?", 1)[0] == ECHO_PATH
        # The handshake's request and response (headers: about 4 KiB) are not needed once the
        # connection is open; an idle connection should not carry them for hours. `websockets`
        # treats a request of None as "handshake pending", so a shared empty one stands in, and
        # its parser keeps the original request alive, so its headers are emptied in place.
        if connection.request is not None:
            connection.request.headers.clear()
        connection.request, connection.response = HANDSHAKE_DONE, None
        if self._keepalive is not None:
            self._keepalive.add(connection)
        try:
            if is_echo:
                await _echo(connection)
            else:
                await self._serve_session(connection)
        finally:
            if self._keepalive is not None:
                self._keepalive.discard(connection)
            self._open_per_ip[address] -= 1
            if self._open_per_ip[address] <= 0:
                del self._open_per_ip[address]

    async def _serve_session(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        msgpack = connection.subprotocol == protocol.SUBPROTOCOL_MSGPACK
        frames = self._msgpack_frames if msgpack else self._frames
        sink = WebSocketSink(connection, frames, self.hub.settings.compression_threshold)
        session = Session(
            self.hub,
            sink,
            verifier=self.verifier,
            call_later=loop.call_later,
        )
        try:
            async for message in connection:
                try:
                    commands = protocol.decode_frame(_command_lines(message, msgpack))
                except UnsupportedFrame as exc:
                    session.disconnect(DisconnectCode.UNSUPPORTED_DATA, str(exc), notify=False)
                    break
                except ProtocolError as exc:
                    session.disconnect(DisconnectCode.BAD_REQUEST, f"bad request: {exc}", notify=False)
                    break
                for command in commands:
                    await session.handle(command)
        except ConnectionClosed:
            pass
        finally:
            session.closed()
            await self.hub.remove_session(session)
            await sink.settle()


class UnsupportedFrame(Exception):
    """A text frame on a MessagePack connection, or a binary frame on a JSON one (close 1003)."""


def _command_lines(message: str | bytes, msgpack: bool) -> bytes | str:
    if msgpack:
        if isinstance(message, str):
            raise UnsupportedFrame(f"text frames are not part of {protocol.SUBPROTOCOL_MSGPACK}")
        return protocol.json_lines_from_msgpack(message)
    if isinstance(message, bytes):
        raise UnsupportedFrame(f"binary frames are not part of {protocol.SUBPROTOCOL_JSON}")
    return message


def _peer_ip(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "unknown"


async def _echo(connection: ServerConnection) -> None:
    """TEST ONLY (setting test_echo_endpoint): echo every message, for the conformance suite."""
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass


@functools.cache
def _page_body(name: str) -> bytes:
    return resources.files("hubbub").joinpath("web", name).read_bytes()


def _file_response(name: str, content_type: str) -> Response:
    body = _page_body(name)
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Content-Security-Policy", PAGE_CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-cache"),
        ]
    )
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def _json_response(status: HTTPStatus, body: bytes) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
