"""hubbub's client protocol on an aiohttp application's own port.

    hubbub.attach_aiohttp(app, server)   # ws://HOST:PORT/connection/websocket on the app's server

aiohttp parses frames, enforces `max_message_bytes` (1009) and pings every `ping_interval`
(heartbeat); hubbub checks Origin, per-IP limits, commands, rates and slow readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from hubbub import wire
from hubbub.mounts.bridge import MountedConnection, QueueSink
from hubbub.transports.admission import UNSUPPORTED_SUBPROTOCOL, first_spoken
from hubbub.transports.websocket import WEBSOCKET_PATH

if TYPE_CHECKING:
    from hubbub.server import Server

__all__ = ["attach_aiohttp"]


def attach_aiohttp(app: web.Application, server: Server, path: str = WEBSOCKET_PATH) -> None:
    """Serve `server`'s WebSocket clients at `path` of `app` (start the server with the app)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        context = server.mount_context()
        if context is None or context.is_draining():
            return web.Response(status=503, text="server is not running\n")
        address = request.remote or "unknown"
        headers = {key.lower(): value for key, value in request.headers.items()}
        refused = context.admission.check(headers.get("origin"), headers.get("host"), address)
        if refused is not None:
            return web.Response(status=int(refused[0]), text=refused[1])
        settings = context.hub.settings
        ws = web.WebSocketResponse(
            protocols=tuple(wire.PROTOCOLS),
            max_msg_size=settings.max_message_bytes or 0,
            heartbeat=settings.ping_interval,
            compress=False,
        )
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if offered and first_spoken(offered) is None:
            return web.Response(status=400, text=UNSUPPORTED_SUBPROTOCOL + "\n")
        if not headers.get("sec-websocket-key", "").isascii():  # aiohttp's prepare raises on it: a 500
            return web.Response(status=400, text="invalid Sec-WebSocket-Key\n")
        await ws.prepare(request)
        protocol = wire.for_subprotocol(ws.ws_protocol)

        async def send_data(data: str | bytes) -> None:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)

        async def send_close(code: int, reason: str) -> None:
            await ws.close(code=code, message=reason.encode())

        sink = QueueSink(protocol, send_data, send_close)
        connection = MountedConnection(context, protocol, sink, address, headers, "aiohttp")
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await connection.received(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            await connection.finished(ws.close_code, "")
        return ws

    app.router.add_get(path, handle)
