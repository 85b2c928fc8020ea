"""hubbub's client protocol as an ASGI application, for apps that must serve it on their own port.

    app.mount("/connection", hubbub.ASGIApp(server))   # FastAPI / Starlette: ws://HOST/connection/

The host server (uvicorn, hypercorn, daphne) parses frames, answers pings and enforces its own
size limit; hubbub checks Origin, per-IP limits, message size, commands, rates and slow readers.
hubbub's own transport stays the fast path (docs/benchmarks.md measures both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from hubbub import wire
from hubbub.errors import DisconnectCode
from hubbub.mounts.bridge import MountedConnection, QueueSink
from hubbub.transports.admission import UNSUPPORTED_SUBPROTOCOL, first_spoken

if TYPE_CHECKING:
    from hubbub.server import Server

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

__all__ = ["ASGIApp"]


class ASGIApp:
    """Serves WebSocket clients of `server` (started elsewhere, e.g. in the app's lifespan)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _http_answer(send, 404, "hubbub: WebSocket clients only here\n")
            return
        if scope["type"] != "websocket":  # lifespan: the host app runs the server's start and close
            return
        if (await receive())["type"] != "websocket.connect":
            return
        context = self.server.mount_context()
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if context is None or context.is_draining():
            await _refuse(scope, send, 503, "server is not running\n")
            return
        refused = context.admission.check(headers.get("origin"), headers.get("host"), address)
        offered = scope.get("subprotocols") or []
        chosen = first_spoken(offered)
        if refused is None and offered and chosen is None:
            refused = (HTTPStatus.BAD_REQUEST, UNSUPPORTED_SUBPROTOCOL + "\n")
        if refused is not None:
            await _refuse(scope, send, int(refused[0]), refused[1])
            return
        await send({"type": "websocket.accept", "subprotocol": chosen})
        protocol = wire.for_subprotocol(chosen)

        async def send_data(data: str | bytes) -> None:
            await send(
                {"type": "websocket.send", "bytes": data}
                if isinstance(data, bytes)
                else {"type": "websocket.send", "text": data}
            )

        async def send_close(code: int, reason: str) -> None:
            await send({"type": "websocket.close", "code": code, "reason": reason})

        sink = QueueSink(protocol, send_data, send_close)
        connection = MountedConnection(context, protocol, sink, address, headers, "asgi")
        code: int | None = None
        reason = ""
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("text")
                    await connection.received(data if data is not None else message.get("bytes") or b"")
                elif kind == "websocket.disconnect":
                    code, reason = message.get("code", DisconnectCode.GOING_AWAY), message.get("reason") or ""
                    break
        finally:
            await connection.finished(code, reason)


async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    """An HTTP answer before the upgrade where the host supports it, else a close (HTTP 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await _http_answer(send, status, text, prefix="websocket.")
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": text.strip()[:123]})


async def _http_answer(send: Send, status: int, text: str, prefix: str = "") -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": f"{prefix}http.response.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}http.response.body", "body": text.encode()})
