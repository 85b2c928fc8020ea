"""A session served through a host server's WebSocket (ASGI, aiohttp) instead of our own.

The host gives us an async `send` and a stream of received messages. Our outbox writes
synchronously, so `QueueSink` queues converted payloads for one writer task per connection and
tells the outbox it is not writable while more than `HIGH_WATER` bytes wait: the slow-consumer
cut (3008, max_outbox_bytes) then works as on our own transport. What the host does not expose
(its kernel buffer, ping/pong, frame parsing) is the host's; docs/integration.md lists each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hubbub import wire
from hubbub.core.application import Peer, application_for
from hubbub.core.auth import TokenVerifier
from hubbub.core.hooks import HookRunner
from hubbub.core.hub import Hub
from hubbub.core.session import Session
from hubbub.errors import DisconnectCode
from hubbub.transports.admission import Admission
from hubbub.transports.messages import run_message
from hubbub.transports.sink import close_reason

log = logging.getLogger("hubbub.mount")

HIGH_WATER = 64 * 1024  # bytes queued for the host before the outbox holds back (asyncio's default)
LOW_WATER = HIGH_WATER // 4

SendData = Callable[[str | bytes], Awaitable[None]]
SendClose = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MountContext:
    """What a mount needs of a started Server."""

    hub: Hub
    verifier: TokenVerifier | None
    hooks: HookRunner
    admission: Admission
    forwarded_headers: frozenset[str]
    is_draining: Callable[[], bool]
    sinks: set[QueueSink] = field(default_factory=set)  # open mounted connections, closed at drain


class QueueSink:
    """The outbox's sink over a host's async send: converted once per payload, written in order."""

    def __init__(self, protocol: wire.WireProtocol, send_data: SendData, send_close: SendClose) -> None:
        self._convert = protocol.from_internal
        self._binary = protocol.binary
        self._send_data = send_data
        self._send_close = send_close
        self._queue: deque[str | bytes] = deque()
        self._queued = 0
        self._close: tuple[int, str] | None = None
        self._wake = asyncio.Event()
        self._waiters: list[Callable[[], None]] = []
        self._last: tuple[bytes, str | bytes] | None = None  # a fan-out hands many sinks one payload
        self.closed = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_forever())

    def write(self, payload: bytes) -> None:
        if self._close is not None:
            return
        last = self._last
        if last is not None and last[0] is payload:
            data = last[1]
        else:
            converted = self._convert(payload) if self._convert is not None else payload
            data = converted if self._binary else converted.decode()
            self._last = (payload, data)
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    def writable(self) -> bool:
        return self._queued < HIGH_WATER

    def buffered_bytes(self) -> int:
        return self._queued

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._waiters.append(callback)

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, close_reason(reason))
            self._wake.set()

    def _drained(self) -> None:
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    async def _write_forever(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    await self._send_data(data)
                    if self._waiters and self._queued <= LOW_WATER:
                        self._drained()
                if self._close is not None:
                    await self._send_close(*self._close)
                    return
        except Exception as exc:  # the host's connection is gone: nothing more can be written
            log.debug("mounted connection write failed: %s", exc)
        finally:
            self._queue.clear()
            self._queued = 0
            self._drained()
            self.closed.set()

    async def stop(self) -> None:
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


class MountedConnection:
    """One client on a mount: its Session, fed the host's received messages."""

    def __init__(
        self,
        context: MountContext,
        protocol: wire.WireProtocol,
        sink: QueueSink,
        address: str,
        headers: dict[str, str],
        transport: str,
    ) -> None:
        self._context = context
        self._protocol = protocol
        self.sink = sink
        context.sinks.add(sink)
        self._address = context.admission.opened_address(address)
        hub = context.hub
        app = application_for(context.hooks, hub, Peer(transport, address, headers), context.forwarded_headers)
        loop = asyncio.get_running_loop()
        self.session = Session(hub, sink, verifier=context.verifier, call_later=loop.call_later, app=app)
        self._max_bytes = context.hub.settings.max_message_bytes

    async def received(self, message: str | bytes) -> None:
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if self._max_bytes is not None and size > self._max_bytes:  # the host read it whole: refuse it still
            self.session.disconnect(DisconnectCode.MESSAGE_TOO_BIG, "message too big", notify=False)
            return
        await run_message(self.session, self._protocol, message)

    async def finished(self, code: int | None, reason: str) -> None:
        """The host reports the connection gone."""
        try:
            self.session.closed(code, reason)
            await self._context.hub.remove_session(self.session)
        finally:
            self._context.admission.release(self._address)
            self._context.sinks.discard(self.sink)
            await self.sink.stop()
