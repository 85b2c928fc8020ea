"""The public WebSocket endpoint, on the `websockets` library (DESIGN.md says why).

`websockets` owns the RFC 6455 work: handshake, masking, UTF-8 checks, max frame size (close
1009), keepalive pings (close 1011 when no pong). This module adapts a connection to a
core Session: frames in -> commands, outbox flushes -> one text frame per write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState
from websockets.typing import Subprotocol

from hubbub import protocol
from hubbub.core.auth import TokenVerifier
from hubbub.core.hub import Hub
from hubbub.core.session import Session
from hubbub.errors import DisconnectCode, ProtocolError

log = logging.getLogger("hubbub.websocket")

WEBSOCKET_PATH = "/connection/websocket"
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 section 5.5: control frame payload <= 125 bytes


def close_reason(text: str) -> str:
    encoded = text.encode()[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore")


class WebSocketSink:
    """Writes outbox frames straight into one `websockets` connection.

    Bypasses `Connection.send()` (a coroutine, one await per frame) the way
    `websockets.broadcast()` does: safe because we never fragment and compression is off.
    """

    __slots__ = ("_connection", "_tasks")

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        self._tasks: set[asyncio.Future[None]] = set()

    def write(self, payload: bytes) -> None:
        connection = self._connection
        if connection.protocol.state is not WsState.OPEN:
            return
        try:
            connection.protocol.send_text(payload)
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


def select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """`hubbub.json.v1` when offered; a client offering nothing gets JSON too."""
    if not offered or protocol.SUBPROTOCOL_JSON in offered:
        return Subprotocol(protocol.SUBPROTOCOL_JSON) if offered else None
    raise NegotiationError(f"unsupported subprotocol; this server speaks {protocol.SUBPROTOCOL_JSON}")


class WebSocketEndpoint:
    """Serves `/connection/websocket` and `GET /health` on the public port."""

    def __init__(self, hub: Hub, verifier: TokenVerifier | None, is_draining: Callable[[], bool]) -> None:
        self.hub = hub
        self.verifier = verifier
        self.is_draining = is_draining
        self.server: Server | None = None

    async def start(self, host: str, port: int) -> Server:
        settings = self.hub.settings
        self.server = await serve(
            self.handle,
            host,
            port,
            process_request=self.process_request,
            select_subprotocol=select_subprotocol,
            compression=None,
            max_size=settings.max_message_bytes,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            server_header="hubbub",
        )
        return self.server

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            status = HTTPStatus.SERVICE_UNAVAILABLE if self.is_draining() else HTTPStatus.OK
            return _json_response(status, b'{"status":"%s"}' % (b"draining" if self.is_draining() else b"ok"))
        if path != WEBSOCKET_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found; the WebSocket endpoint is {WEBSOCKET_PATH}\n")
        if self.is_draining():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down\n")
        return None

    async def handle(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        sink = WebSocketSink(connection)
        session = Session(
            self.hub,
            sink,
            verifier=self.verifier,
            call_later=loop.call_later,
        )
        try:
            async for message in connection:
                if isinstance(message, bytes):
                    reason = f"binary frames are not part of {protocol.SUBPROTOCOL_JSON}"
                    session.disconnect(DisconnectCode.UNSUPPORTED_DATA, reason, notify=False)
                    break
                try:
                    commands = protocol.decode_frame(message)
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


def _json_response(status: HTTPStatus, body: bytes) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
