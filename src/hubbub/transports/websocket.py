"""The public WebSocket endpoint: each upgrade routed, each open connection tied to a Session.

`websockets`' sans-I/O core does the RFC 6455 work (handshake validation, frames, close codes,
permessage-deflate) inside our own asyncio protocol (wsconnection.py, DESIGN.md says why). This
module routes an upgrade request (pages.py answers plain HTTP, admission.py refuses, echo.py is
the test endpoint) and adapts an open connection to a Session through its wire protocol (wire/):
messages in -> commands, outbox flushes -> one frame per write (sink.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from http import HTTPStatus
from ssl import SSLContext
from typing import Final

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Response

from hubbub import protocol, wire
from hubbub.core.application import Peer, application_for
from hubbub.core.auth import TokenVerifier
from hubbub.core.hooks import HookRunner
from hubbub.core.hub import Hub
from hubbub.core.session import CallLater, Session
from hubbub.errors import ConfigError
from hubbub.transports import pages
from hubbub.transports.admission import Admission, select_subprotocol
from hubbub.transports.centrifugo import CentrifugoHandler, CentrifugoSink, ProtocolRefused
from hubbub.transports.echo import ECHO_PATH, EchoHandler
from hubbub.transports.frames import DEFLATE_MEM_LEVEL, OP_BINARY, OP_TEXT, FrameCache
from hubbub.transports.graphql_ws import GraphQLConnection, GraphQLService, SubprotocolRefused
from hubbub.transports.handshake import UpgradeRequest
from hubbub.transports.http_exchange import StreamContext
from hubbub.transports.http_stream import SEND_PATH, STREAM_PATH, HttpStreamEndpoint
from hubbub.transports.keepalive import Keepalive
from hubbub.transports.session_handler import SessionHandler
from hubbub.transports.sink import WebSocketSink
from hubbub.transports.sse import SSE_PATH, SseEndpoint
from hubbub.transports.wsconnection import (
    ConnectionOptions,
    ConnectionRegistry,
    HttpExchange,
    MessageHandler,
    WebSocketConnection,
    WebSocketServer,
)
from hubbub.wire.centrifugo import SUBPROTOCOL_PROTOBUF

log = logging.getLogger("hubbub.websocket")

WEBSOCKET_PATH: Final = "/connection/websocket"
LISTEN_BACKLOG: Final = 1024  # pending TCP connections the kernel queues during a reconnect storm


class WebSocketEndpoint:
    """Serves `/connection/websocket`, the pages and `GET /health` on the public port."""

    def __init__(
        self,
        hub: Hub,
        verifier: TokenVerifier | None,
        is_draining: Callable[[], bool],
        hooks: HookRunner | None = None,
        graphql: GraphQLService | None = None,
    ) -> None:
        self.hub = hub
        self._graphql = graphql
        self.verifier = verifier
        self.hooks = hooks
        self.forwarded_headers = {
            name.strip().lower() for name in hub.settings.hook_forward_headers.split(",") if name.strip()
        }
        self.is_draining = is_draining
        self.server: WebSocketServer | None = None
        self._call_later: CallLater | None = None  # `loop.call_later`, bound once for every session
        self._call_later_loop: asyncio.AbstractEventLoop | None = None  # the loop it is bound to
        settings = hub.settings
        self.admission = self._admission = Admission(settings, hub.count_limit_hit)
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
            max_queued_messages=settings.max_queued_messages,
            extensions=[deflate_factory()] if settings.compression else None,
            select_subprotocol=select_subprotocol,
        )
        self._centrifugo = wire.centrifugo_protocols(settings.refresh_before) if settings.centrifugo_path else {}
        # One frame cache per wire protocol: a payload is converted and framed once for all of them.
        self._frames = {
            protocol.subprotocol: FrameCache(OP_BINARY if protocol.binary else OP_TEXT, protocol.from_internal)
            for protocol in (*wire.PROTOCOLS.values(), *self._centrifugo.values())
        }
        streams = StreamContext(hub, verifier, hooks, self._admission, frozenset(self.forwarded_headers), is_draining)
        self._sse = SseEndpoint(streams)
        self._http_stream = HttpStreamEndpoint(streams)

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> WebSocketServer:
        settings = self.hub.settings
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            lambda: WebSocketConnection(self._registry, self, self._options, loop),
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

    def process_request(
        self, connection: WebSocketConnection, request: UpgradeRequest
    ) -> Response | HttpExchange | None:
        """A plain HTTP answer for this request, an exchange that streams one, or None to upgrade it."""
        path, _, query = request.path.partition("?")
        settings = self.hub.settings
        page = pages.PAGES.get(path)
        if page is not None:
            return pages.file_response(*page)
        if path == pages.DEV_TOKEN_PATH and settings.dev:
            assert settings.token_secret is not None  # Server makes one when `dev` is on
            return pages.dev_token(settings.token_secret, query)
        if path == "/health":
            return pages.health(self.is_draining())
        if path == SSE_PATH:
            return self._sse.exchange_for(connection, request, query)
        if path == STREAM_PATH or path == SEND_PATH:
            return self._http_stream.exchange_for(connection, request, path)
        is_echo = path == ECHO_PATH and settings.test_echo_endpoint
        if path == settings.graphql_path:
            if self._graphql is None:
                return connection.respond(
                    HTTPStatus.NOT_FOUND, "no GraphQL schema on this server (setting graphql_schema)\n"
                )
        elif path != WEBSOCKET_PATH and not is_echo and not (path == settings.centrifugo_path and path):
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found; the WebSocket endpoint is {WEBSOCKET_PATH}\n")
        if self.is_draining():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down\n")
        return self._admission.refusal(connection, request)

    def opened(self, connection: WebSocketConnection, request: UpgradeRequest) -> MessageHandler:
        """The upgrade succeeded: count the address and give the connection its session."""
        address = self._admission.opened(connection)
        if self.hub.settings.test_echo_endpoint and request.path.split("?", 1)[0] == ECHO_PATH:
            return EchoHandler(connection, self._admission, address)
        is_graphql = request.path.split("?", 1)[0] == self.hub.settings.graphql_path
        if is_graphql != (connection.subprotocol == protocol.SUBPROTOCOL_GRAPHQL):
            return SubprotocolRefused(connection, self._admission, address)
        if is_graphql:
            assert self._graphql is not None
            peer = Peer("graphql", address, request.headers)
            app = application_for(self.hooks, self.hub, peer, self.forwarded_headers)
            return GraphQLConnection(self._graphql, self.hub, connection, self._admission, address, self.verifier, app)
        is_centrifugo = request.path.split("?", 1)[0] == self.hub.settings.centrifugo_path
        subprotocol = connection.subprotocol
        protobuf = subprotocol == SUBPROTOCOL_PROTOBUF
        spoken_here = (subprotocol is None or protobuf) if is_centrifugo else not protobuf
        if not spoken_here:
            where = "this path speaks Centrifugo's protocol" if is_centrifugo else f"{subprotocol} is spoken"
            path = self.hub.settings.centrifugo_path if not is_centrifugo else WEBSOCKET_PATH
            return ProtocolRefused(connection, self._admission, address, f"{where}; use {path}")
        if is_centrifugo:
            return self._session(connection, request, address, self._centrifugo[subprotocol], centrifugo=True)
        return self._session(connection, request, address, wire.for_subprotocol(subprotocol), centrifugo=False)

    def _session(
        self,
        connection: WebSocketConnection,
        request: UpgradeRequest,
        address: str,
        wire_protocol: wire.WireProtocol,
        *,
        centrifugo: bool,
    ) -> SessionHandler:
        frames = self._frames[wire_protocol.subprotocol]
        threshold = self.hub.settings.compression_threshold
        sink_type = CentrifugoSink if centrifugo else WebSocketSink
        sink = sink_type(connection, frames, threshold)
        kind = "centrifugo" if centrifugo else "websocket"
        app = application_for(self.hooks, self.hub, Peer(kind, address, request.headers), self.forwarded_headers)
        call_later = self._loop_call_later(connection.loop)
        session = Session(self.hub, sink, verifier=self.verifier, call_later=call_later, app=app)
        handler = CentrifugoHandler if centrifugo else SessionHandler
        return handler(self.hub, session, wire_protocol, self._admission, address, connection)

    def _loop_call_later(self, loop: asyncio.AbstractEventLoop) -> CallLater:
        """One bound method for every session of this loop, not one per session (64 bytes each)."""
        call_later = self._call_later
        if call_later is None or self._call_later_loop is not loop:
            call_later = self._call_later = loop.call_later
            self._call_later_loop = loop
        return call_later


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
