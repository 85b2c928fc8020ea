"""The public WebSocket endpoint: upgrade checks, and each open connection tied to a core Session.

`websockets`' sans-I/O core does the RFC 6455 work (handshake validation, frames, close codes,
permessage-deflate) inside our own asyncio protocol (wsconnection.py, DESIGN.md says why). This
module decides who may connect (Origin, per-IP limits, subprotocol, draining), serves the few
pages of the public port, and adapts a connection to a Session: messages in -> commands, outbox
flushes -> one frame per write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from importlib import resources
from ssl import SSLContext
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.http11 import Response
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from hubbub import protocol
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.core.hub import Hub
from hubbub.core.ratelimit import KeyedBuckets
from hubbub.core.session import Session
from hubbub.core.session import State as SessionState
from hubbub.errors import ConfigError, DisconnectCode, ProtocolError
from hubbub.transports.frames import DEFLATE_MEM_LEVEL, OP_BINARY, FrameCache
from hubbub.transports.handshake import UpgradeRequest
from hubbub.transports.keepalive import Keepalive
from hubbub.transports.wsconnection import (
    ConnectionOptions,
    ConnectionRegistry,
    Message,
    MessageHandler,
    WebSocketConnection,
    WebSocketServer,
)

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
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 section 5.5: control frame payload <= 125 bytes
LISTEN_BACKLOG = 1024  # pending TCP connections the kernel queues during a reconnect storm


def close_reason(text: str) -> str:
    encoded = text.encode()[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore")


class WebSocketSink:
    """Writes outbox frames straight into one connection's transport.

    The flusher hands consecutive connections the same payload object, framed once by
    `FrameCache`, so a fan-out costs one `transport.write` per connection and nothing else. With
    permessage-deflate, frames under `compression_threshold` bytes go uncompressed (allowed per
    message, RFC 7692 section 6) and larger ones are compressed once per fan-out (the server never
    takes over context); a window zlib cannot make (8 bits) goes through the protocol instead.
    """

    __slots__ = ("_connection", "_deflate_bits", "_frames", "_protocol", "_threshold")

    def __init__(self, connection: WebSocketConnection, frames: FrameCache, compression_threshold: int = 0) -> None:
        assert connection.protocol is not None, "a sink is made for an open connection"
        self._connection = connection
        self._protocol = connection.protocol
        self._frames = frames
        extensions = self._protocol.extensions
        # Frames shorter than this go out raw and uncompressed: all of them without an extension.
        self._threshold = compression_threshold if extensions else sys.maxsize
        self._deflate_bits = 0
        if len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
            deflate = extensions[0]
            if deflate.local_no_context_takeover and deflate.local_max_window_bits >= 9:  # zlib cannot do 8
                self._deflate_bits = deflate.local_max_window_bits

    def write(self, payload: bytes) -> None:
        connection = self._connection
        protocol = self._protocol
        if protocol.state is not WsState.OPEN:
            return
        transport = connection.transport
        assert transport is not None
        try:
            if len(payload) < self._threshold:
                transport.write(self._frames.frame_for(payload))
            elif self._deflate_bits:
                transport.write(self._frames.deflated_frame_for(payload, self._deflate_bits))
            else:
                data = self._frames.data_for(payload)
                if self._frames.binary:
                    protocol.send_binary(data)
                else:
                    protocol.send_text(data)
                connection.flush()
        except Exception as exc:  # a dead transport must not abort the fan-out
            log.debug("write to %s failed: %s", connection.remote_address, exc)

    def writable(self) -> bool:
        return not self._connection.paused

    def buffered_bytes(self) -> int:
        transport = self._connection.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._connection.when_writable(callback)

    def close(self, code: int, reason: str) -> None:
        self._connection.close(code, close_reason(reason))


def enable_fast_open(sockets: Iterable[socket.socket], queue: int) -> None:
    """TCP Fast Open (RFC 7413): a returning client's SYN carries its upgrade request, saving a
    round trip per reconnect. The kernel also needs net.ipv4.tcp_fastopen with bit 2 set."""
    option = getattr(socket, "TCP_FASTOPEN", None)
    if option is None:
        raise ConfigError("setting 'tcp_fastopen': this platform has no TCP Fast Open")
    for listening in sockets:
        listening.setsockopt(socket.IPPROTO_TCP, option, queue)


def deflate_factory() -> ServerPerMessageDeflateFactory:
    """permessage-deflate without context takeover either way (RFC 7692 section 7.1.1).

    The server's messages each stand alone, so one compression serves every subscriber. The
    client's too: then no inflater lives between its messages, which saves about 7 KiB per idle
    connection (docs/benchmarks.md); commands are small, so little compression is lost.
    """
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        compress_settings={"memLevel": DEFLATE_MEM_LEVEL},
    )


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


class SessionHandler:
    """Runs one connection's messages as commands of its Session."""

    __slots__ = ("_endpoint", "_msgpack", "address", "session")

    def __init__(self, endpoint: WebSocketEndpoint, session: Session, address: str, msgpack: bool) -> None:
        self._endpoint = endpoint
        self.session = session
        self.address = address
        self._msgpack = msgpack

    async def handle(self, message: Message) -> None:
        session = self.session
        if session.state is SessionState.CLOSED:  # we disconnected it: ignore what was in flight
            return
        try:
            commands = protocol.decode_frame(_command_lines(message, self._msgpack))
        except UnsupportedFrame as exc:
            session.disconnect(DisconnectCode.UNSUPPORTED_DATA, str(exc), notify=False)
            return
        except ProtocolError as exc:
            session.disconnect(DisconnectCode.BAD_REQUEST, f"bad request: {exc}", notify=False)
            return
        for command in commands:
            await session.handle(command)

    async def closed(self) -> None:
        self.session.closed()
        try:
            await self._endpoint.hub.remove_session(self.session)
        finally:
            self._endpoint.release(self.address)


class EchoHandler:
    """TEST ONLY (setting test_echo_endpoint): echo every message, for the conformance suite."""

    __slots__ = ("_connection", "_endpoint", "address")

    def __init__(self, endpoint: WebSocketEndpoint, connection: WebSocketConnection, address: str) -> None:
        self._endpoint = endpoint
        self._connection = connection
        self.address = address

    async def handle(self, message: Message) -> None:
        self._connection.send_message(message)

    async def closed(self) -> None:
        self._endpoint.release(self.address)


class WebSocketEndpoint:
    """Serves `/connection/websocket` and `GET /health` on the public port."""

    def __init__(self, hub: Hub, verifier: TokenVerifier | None, is_draining: Callable[[], bool]) -> None:
        self.hub = hub
        self.verifier = verifier
        self.is_draining = is_draining
        self.server: WebSocketServer | None = None
        settings = hub.settings
        self._allowed_origins = (
            [entry.strip().lower().rstrip("/") for entry in settings.allowed_origins.split(",") if entry.strip()]
            if settings.allowed_origins
            else None
        )
        self._attempts = KeyedBuckets(settings.connect_rate_per_ip, settings.connect_burst_per_ip)
        self._open_per_ip: Counter[str] = Counter()
        self._registry = ConnectionRegistry()
        self._keepalive = (
            Keepalive(self._registry, settings.ping_interval, settings.ping_timeout)
            if settings.ping_interval is not None
            else None
        )
        self._options = ConnectionOptions(
            max_size=settings.max_message_bytes,
            handshake_timeout=settings.handshake_timeout,
            # A peer provoking writes (pongs) it never reads is not read either past this.
            max_unread_bytes=settings.max_outbox_bytes,
            max_head_bytes=settings.max_request_head_bytes,
            close_timeout=settings.close_timeout,
            extensions=[deflate_factory()] if settings.compression else None,
            select_subprotocol=select_subprotocol,
        )
        self._frames = FrameCache()
        self._msgpack_frames = FrameCache(OP_BINARY, protocol.msgpack_from_json_lines)

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> WebSocketServer:
        settings = self.hub.settings
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            lambda: WebSocketConnection(self._registry, self, self._options),
            host,
            port,
            ssl=ssl,
            ssl_handshake_timeout=settings.handshake_timeout if ssl is not None else None,
            reuse_port=settings.reuse_port or None,
            backlog=LISTEN_BACKLOG,
        )
        self.server = WebSocketServer(listening, self._registry)
        if settings.tcp_fastopen:
            enable_fast_open(self.server.sockets, settings.tcp_fastopen)
        if self._keepalive is not None:
            self._keepalive.start()
        return self.server

    def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()

    def process_request(self, connection: WebSocketConnection, request: UpgradeRequest) -> Response | None:
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
        if not origin_allowed(request.headers.get("origin"), request.headers.get("host"), self._allowed_origins):
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

    def opened(self, connection: WebSocketConnection, request: UpgradeRequest) -> MessageHandler:
        """The upgrade succeeded: count the address and give the connection its session."""
        address = _peer_ip(connection)
        self._open_per_ip[address] += 1
        if self.hub.settings.test_echo_endpoint and request.path.split("?", 1)[0] == ECHO_PATH:
            return EchoHandler(self, connection, address)
        loop = asyncio.get_running_loop()
        msgpack = connection.subprotocol == protocol.SUBPROTOCOL_MSGPACK
        frames = self._msgpack_frames if msgpack else self._frames
        sink = WebSocketSink(connection, frames, self.hub.settings.compression_threshold)
        session = Session(self.hub, sink, verifier=self.verifier, call_later=loop.call_later)
        return SessionHandler(self, session, address, msgpack)

    def release(self, address: str) -> None:
        self._open_per_ip[address] -= 1
        if self._open_per_ip[address] <= 0:
            del self._open_per_ip[address]


def select_subprotocol(_: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The client's first offer we speak (JSON or MessagePack); offering nothing means JSON."""
    if not offered:
        return None
    for name in offered:
        if name in protocol.SUBPROTOCOLS:
            return Subprotocol(name)
    raise NegotiationError(f"unsupported subprotocol; this server speaks {', '.join(protocol.SUBPROTOCOLS)}")


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


def _peer_ip(connection: WebSocketConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "unknown"


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
