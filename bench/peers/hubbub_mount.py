"""hubbub served through a host server's WebSocket, for the suite's mount comparison.

`python -m bench.peers.hubbub_asgi PORT` (FastAPI under uvicorn, hubbub.ASGIApp) and
`python -m bench.peers.hubbub_aiohttp PORT` (an aiohttp app, hubbub.attach_aiohttp): the same
settings as the suite's `hubbub serve` (bench/servers.py), hubbub's own public port off.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench.peers import announce, loop_factory, port_from
from hubbub import ASGIApp, Server, attach_aiohttp
from hubbub.config import Settings, from_mapping


def settings(folder: str) -> Settings:
    """The suite's settings; `key=value` arguments after the port override them (tests do)."""
    from bench.servers import HUBBUB_NAMESPACES

    overrides = dict(arg.split("=", 1) for arg in sys.argv[2:] if "=" in arg)
    values = from_mapping(
        {
            "port": 0,
            "api_port": 0,
            "listen_public": False,
            "history_path": str(Path(folder) / "history.db"),
            "connect_rate_per_ip": "none",
            "max_connections_per_ip": "none",
            "max_connections_per_user": "none",
            "command_rate": "none",
            "publish_rate": "none",
            "log_level": "warning",
            "namespaces": HUBBUB_NAMESPACES,
            **overrides,
        },
        "the mount benchmark",
    )
    return Settings(**values)


async def serve_asgi(port: int, folder: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    server = Server(settings(folder))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with server:
            print(f"server API on {server.api_url}/api/", flush=True)
            announce("hubbub-asgi", port)
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/connection", ASGIApp(server))
    listening = socket.create_server(("127.0.0.1", port), backlog=1024)
    config = uvicorn.Config(app, log_level="warning", ws_ping_interval=25.0, ws_ping_timeout=10.0, backlog=1024)
    await uvicorn.Server(config).serve(sockets=[listening])


async def serve_aiohttp(port: int, folder: str) -> None:
    from aiohttp import web

    server = Server(settings(folder))
    app = web.Application()
    attach_aiohttp(app, server)
    async with server:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        print(f"server API on {server.api_url}/api/", flush=True)
        announce("hubbub-aiohttp", port)
        await asyncio.Future()


def main(kind: str) -> None:
    port = port_from(sys.argv)
    with tempfile.TemporaryDirectory(prefix="hubbub-mount-") as folder:
        serve = serve_asgi if kind == "asgi" else serve_aiohttp
        with asyncio.Runner(loop_factory=loop_factory(sys.argv)) as runner:
            runner.run(serve(port, folder))
