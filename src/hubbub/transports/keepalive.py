"""Keepalive for every connection from one timer, instead of a task per connection.

A keepalive task per connection (what `websockets.asyncio` runs: a Task, its coroutine, a sleep
timer and a WeakSet entry) costs about 1 KiB per idle connection (docs/benchmarks.md). Here one
timer pings all open connections every `interval` seconds, in slices so a tick never blocks the
loop for long, and fails with 1011 those whose pong has not come `timeout` seconds later: the
same behaviour and close code as `websockets`' own keepalive.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final

from websockets.frames import CloseCode
from websockets.protocol import State

from hubbub.transports.wsconnection import ConnectionRegistry, WebSocketConnection

SLICE: Final = 256  # connections pinged per loop callback
Sent = list[tuple[WebSocketConnection, asyncio.Future[None]]]


class Keepalive:
    def __init__(self, registry: ConnectionRegistry, interval: float, timeout: float | None) -> None:
        self.registry = registry
        self.interval = interval
        self.timeout = timeout
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.interval, self._tick)
        self._ping_slice(list(self.registry.connections), 0)

    def _ping_slice(self, connections: list[WebSocketConnection], start: int) -> None:
        loop = asyncio.get_running_loop()
        end = min(start + SLICE, len(connections))
        sent: Sent = []
        for connection in connections[start:end]:
            pong = _ping(connection)
            if pong is not None:
                sent.append((connection, pong))
        if end < len(connections):
            loop.call_soon(self._ping_slice, connections, end)
        if sent and self.timeout is not None:
            loop.call_later(self.timeout, self._expire, sent)

    def _expire(self, sent: Sent) -> None:
        for connection, pong in sent:
            if not pong.done() and connection.state is State.OPEN:
                connection.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")


def _ping(connection: WebSocketConnection) -> asyncio.Future[None] | None:
    """Send a ping now; None if the connection is not open (or mid-handshake). A streamed HTTP
    response (SSE, HTTP streaming) gets its keep-alive instead: it has no pong to wait for."""
    exchange = connection.exchange
    if exchange is not None:
        exchange.keepalive()
        return None
    if connection.state is not State.OPEN:
        return None
    tick = getattr(connection.handler, "keepalive", None)  # a protocol ping of its own (GraphQL)
    if tick is not None:
        tick()
    try:
        return connection.ping(os.urandom(4))
    except Exception:  # a transport closing under us: connection_lost cleans up
        return None
