"""python-socketio: rooms and `emit(..., room=...)`, on aiohttp.

Socket.IO's own framing: events `["sub", CHANNEL]` (answered `["ok", CHANNEL]`) and
`["pub", CHANNEL, PAYLOAD]` (every room member gets `["msg", PAYLOAD]`).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import socketio
from aiohttp import web

from bench.peers import loop_factory, port_from, serve_aiohttp

hub = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")


@hub.on("sub")
async def on_sub(sid: str, channel: str) -> None:
    await hub.enter_room(sid, channel)
    await hub.emit("ok", channel, to=sid)


@hub.on("pub")
async def on_pub(sid: str, channel: str, payload: Any) -> None:
    await hub.emit("msg", payload, room=channel)


async def main(port: int) -> None:
    app = web.Application()
    hub.attach(app)
    await serve_aiohttp(app, "python-socketio", port)


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory(sys.argv)) as runner:
        runner.run(main(port_from(sys.argv)))
