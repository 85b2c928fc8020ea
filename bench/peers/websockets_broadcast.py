"""`websockets` with `broadcast()`: the hub its documentation shows."""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.peers import announce, loop_factory, port_from

channels: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(connection: ServerConnection) -> None:
    joined: list[str] = []
    try:
        async for message in connection:
            text = message if isinstance(message, str) else message.decode()
            if text.startswith("pub "):
                _, channel, payload = text.split(" ", 2)
                broadcast(channels.get(channel, ()), payload)
            elif text.startswith("sub "):
                channel = text[4:]
                channels[channel].add(connection)
                joined.append(channel)
                await connection.send("ok " + channel)
    finally:
        for channel in joined:
            channels[channel].discard(connection)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None) as server:
        announce("websockets-broadcast", server.sockets[0].getsockname()[1])
        await asyncio.Future()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory(sys.argv)) as runner:
        runner.run(main(port_from(sys.argv)))
