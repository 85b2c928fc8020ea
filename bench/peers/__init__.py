"""Naive Python hubs a user would write instead of hubbub: the peers of `python -m bench suite`.

Each speaks the same tiny text protocol so one load generator drives them all:
`sub CHANNEL` is answered with `ok CHANNEL`; `pub CHANNEL PAYLOAD` sends PAYLOAD to every
subscriber of CHANNEL, one frame per message, as the libraries' own examples do.
Run one with `python -m bench.peers.NAME PORT [--uvloop]`; it prints `listening` when ready.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from aiohttp import web


def loop_factory(argv: list[str]) -> Callable[[], asyncio.AbstractEventLoop]:
    if "--uvloop" in argv:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def port_from(argv: list[str]) -> int:
    return int(argv[1]) if len(argv) > 1 else 0


def announce(name: str, port: int) -> None:
    print(f"{name} listening on 127.0.0.1:{port}", flush=True)
    sys.stdout.flush()


async def serve_aiohttp(app: web.Application, name: str, port: int) -> None:
    """Run an aiohttp app on 127.0.0.1:port (0 = any free port) until cancelled."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    announce(name, server.sockets[0].getsockname()[1])
    await asyncio.Future()
