"""Keepalive for every connection from one timer, instead of a task per connection.

`websockets` runs a keepalive task per connection (a Task, its coroutine, a sleep timer and a
WeakSet entry: about 1 KiB per idle connection, measured in docs/benchmarks.md). Here one timer
pings all open connections every `interval` seconds, in slices so a tick never blocks the loop
for long, and closes with 1011 those whose pong has not come `timeout` seconds later: the same
behaviour and close code as `websockets`' own keepalive.

It uses the connection's ping bookkeeping (`pending_pings`, which the connection resolves when a
pong arrives) and its sans-I/O protocol, like the fan-out fast path: checked against websockets
17.x (pinned to 17 in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode
from websockets.protocol import State

SLICE = 256  # connections pinged per loop callback


class Keepalive:
    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        self._connections: dict[ServerConnection, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def add(self, connection: ServerConnection) -> None:
        self._connections[connection] = None

    def discard(self, connection: ServerConnection) -> None:
        self._connections.pop(connection, None)

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.interval, self._tick)
        self._ping_slice(list(self._connections), 0)

    def _ping_slice(self, connections: list[ServerConnection], start: int) -> None:
        loop = asyncio.get_running_loop()
        end = min(start + SLICE, len(connections))
        sent: list[tuple[ServerConnection, asyncio.Future[float]]] = []
        for connection in connections[start:end]:
            pong = _ping(connection, loop)
            if pong is not None:
                sent.append((connection, pong))
        if end < len(connections):
            loop.call_soon(self._ping_slice, connections, end)
        if sent and self.timeout is not None:
            loop.call_later(self.timeout, self._expire, sent)

    def _expire(self, sent: list[tuple[ServerConnection, asyncio.Future[float]]]) -> None:
        for connection, pong in sent:
            if not pong.done() and connection.protocol.state is State.OPEN:
                self._spawn(_fail(connection))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ping(connection: ServerConnection, loop: asyncio.AbstractEventLoop) -> asyncio.Future[float] | None:
    """Send a ping now; the future completes when its pong arrives. None if not open."""
    if connection.protocol.state is not State.OPEN:
        return None
    data = os.urandom(4)
    while data in connection.pending_pings:
        data = os.urandom(4)
    pong: asyncio.Future[float] = loop.create_future()
    connection.pending_pings[data] = (pong, loop.time())
    try:
        connection.protocol.send_ping(data)
        connection.send_data()
    except Exception:  # a transport closing under us: connection_lost cleans up
        return None
    return pong


async def _fail(connection: ServerConnection) -> None:
    """Close with 1011, as websockets' keepalive does when a pong is late."""
    with contextlib.suppress(Exception):
        async with connection.send_context():
            connection.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
