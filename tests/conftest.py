"""Fixtures: real servers on free ports, and a raw WebSocket client that shares no code with ours."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from hubbub.config import Settings
from hubbub.hooks import Hooks
from hubbub.server import Server
from tests.helpers import NAMESPACES
from tests.redis_server import redis_cluster_url, redis_url, running_cluster  # noqa: F401 (fixtures for every folder)

pytest_plugins = ["hubbub.testing"]  # the `hubbub_server` fixture apps use: tested here too

StartServer = Callable[..., Awaitable[Server]]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Tests in a module with `BOTH_LOOPS = True` run on asyncio's loop and on uvloop (the
    server's default, whose transports differ); the others on asyncio's, or on uvloop with
    PYTEST_HUBBUB_LOOP=uvloop (the whole suite on the shipped loop)."""
    if getattr(getattr(item, "module", None), "BOTH_LOOPS", False):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    if os.environ.get("PYTEST_HUBBUB_LOOP") == "uvloop":
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start hubbub on free loopback ports; every server started is closed after the test."""
    servers: list[Server] = []

    async def start(*, hooks: Hooks | None = None, **overrides: Any) -> Server:
        values: dict[str, Any] = {
            "port": 0,
            "api_port": 0,
            "history_path": str(tmp_path / f"history-{len(servers)}.db"),
            "namespaces": NAMESPACES,
            "shutdown_timeout": 5.0,
        }
        values.update(overrides)
        server = Server(Settings(**values), hooks=hooks)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TrafficLog:
    """Every message seen on raw connections, by direction, for schema validation."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.received: list[Any] = []


@pytest.fixture
def traffic() -> TrafficLog:
    return TrafficLog()


class RawClient:
    """A hubbub client written against aiohttp's WebSocket client and the protocol docs only."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, log: TrafficLog | None) -> None:
        self.ws = ws
        self.log = log
        self.buffer: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.frames = 0
        self._next_id = 0

    async def send_raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, method: params or {}}
        if self.log is not None:
            self.log.sent.append(message)
        await self.ws.send_str(json.dumps(message))
        return self._next_id

    async def next_message(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.buffer:
            message = await self.ws.receive(timeout=timeout)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"expected a text frame, got {message.type!r} {message.data!r}")
            self.frames += 1
            for line in message.data.split("\n"):
                decoded = json.loads(line)
                if self.log is not None:
                    self.log.received.append(decoded)
                self.buffer.append(decoded)
        return self.buffer.pop(0)

    async def reply(self, command_id: int, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await self.next_message(timeout)
            if message.get("id") == command_id:
                return message
            self.pushes.append(message)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.reply(await self.send(method, params))

    async def ok(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.call(method, params)
        assert "error" not in reply, reply
        return reply[method]

    async def next_publication(self, timeout: float = 5.0) -> dict[str, Any]:
        for index, message in enumerate(self.pushes):
            if "pub" in message.get("push", {}):
                del self.pushes[index]
                return message["push"]["pub"]
        while True:
            message = await self.next_message(timeout)
            if "pub" in message.get("push", {}):
                return message["push"]["pub"]
            self.pushes.append(message)

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; return its close code. Messages read before it (left in
        the buffer by a frame that carried a reply too, or in later frames) go to `pushes`."""
        self.pushes += self.buffer
        self.buffer = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type == aiohttp.WSMsgType.TEXT:  # kept: a disconnect push comes first
                    self.pushes += [json.loads(line) for line in message.data.split("\n")]
                    continue
                if message.type == aiohttp.WSMsgType.CLOSE:
                    return int(message.data)  # the code in the server's close frame
                if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code


OpenRaw = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def open_raw(http: aiohttp.ClientSession, traffic: TrafficLog) -> AsyncIterator[OpenRaw]:
    clients: list[RawClient] = []

    async def open_client(server: Server, *, connect: bool = True, **kwargs: Any) -> RawClient:
        kwargs.setdefault("protocols", ("hubbub.json.v1",))
        ws = await http.ws_connect(server.url, **kwargs)
        client = RawClient(ws, traffic)
        clients.append(client)
        if connect:
            await client.ok("connect", {})
        return client

    yield open_client
    for client in clients:
        await client.ws.close()
