"""aiohttp: a loop of `send_str` over the channel's subscribers, as its examples do."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import defaultdict

from aiohttp import WSMsgType, web

from bench.peers import loop_factory, port_from, serve_aiohttp

channels: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)


async def handler(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=False)
    await socket.prepare(request)
    joined: list[str] = []
    try:
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            text = message.data
            if text.startswith("pub "):
                _, channel, payload = text.split(" ", 2)
                for subscriber in list(channels.get(channel, ())):
                    with contextlib.suppress(ConnectionError):
                        await subscriber.send_str(payload)
            elif text.startswith("sub "):
                channel = text[4:]
                channels[channel].add(socket)
                joined.append(channel)
                await socket.send_str("ok " + channel)
    finally:
        for channel in joined:
            channels[channel].discard(socket)
    return socket


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", handler)
    await serve_aiohttp(app, "aiohttp-loop", port)


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory(sys.argv)) as runner:
        runner.run(main(port_from(sys.argv)))
