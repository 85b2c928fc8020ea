"""Host servers with hubbub mounted: FastAPI under uvicorn (ASGI) and an aiohttp app, on free
loopback ports, with hubbub's own public port off (one port, as the apps that need a mount run)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import web

from hubbub import ASGIApp, Server, Settings, attach_aiohttp
from hubbub.core.hooks import Hooks
from tests.helpers import NAMESPACES

MOUNTS = ("asgi", "aiohttp")


@dataclass
class Mounted:
    server: Server
    url: str  # ws://127.0.0.1:PORT/connection/websocket, on the host's port
    port: int


@contextlib.asynccontextmanager
async def mounted(kind: str, tmp_path: Path, hooks: Hooks | None = None, **overrides: Any) -> AsyncIterator[Mounted]:
    values: dict[str, Any] = {
        "port": 0,
        "api_port": 0,
        "listen_public": False,
        "history_path": str(tmp_path / f"mounted-{kind}.db"),
        "namespaces": NAMESPACES,
        "shutdown_timeout": 5.0,
    }
    values.update(overrides)
    server = Server(Settings(**values), hooks=hooks)
    if kind == "asgi":
        from fastapi import FastAPI

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with server:
                yield

        app = FastAPI(lifespan=lifespan)
        app.mount("/connection", ASGIApp(server))
        listening = socket.create_server(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        settings = server.settings  # uvicorn pings, as docs/integration.md says to configure it
        config = uvicorn.Config(
            app, log_level="warning", ws_ping_interval=settings.ping_interval, ws_ping_timeout=settings.ping_timeout
        )
        host = uvicorn.Server(config)
        serving = asyncio.create_task(host.serve(sockets=[listening]))
        try:
            await asyncio.wait_for(server.started.wait(), 10)
            yield Mounted(server, f"ws://127.0.0.1:{port}/connection/websocket", port)
        finally:
            host.should_exit = True
            await asyncio.wait_for(serving, 15)
            listening.close()
    else:
        application = web.Application()
        attach_aiohttp(application, server)

        async def run(app: web.Application) -> AsyncIterator[None]:
            async with server:
                yield

        application.cleanup_ctx.append(run)
        runner = web.AppRunner(application, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield Mounted(server, f"ws://127.0.0.1:{port}/connection/websocket", port)
        finally:
            await runner.cleanup()
