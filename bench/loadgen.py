"""The suite's load generator: many WebSocket connections on one event loop (uvloop when
installed, see bench/__main__.py), one core.

Deliveries are counted per frame with `bytes.count` (C speed), so frames that coalesce many
messages cost little; latency is send time (embedded in each payload) to parse time. In
closed-loop runs only each frame's oldest message is timed (the frame's worst case); in
open-loop runs every message is. The process's own CPU is measured: above 90% of a core it
was probably the limit, and the suite says so.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.adapters import HUBBUB, Adapter, HubbubGraphQLAdapter, HubbubSseAdapter, Step
from bench.wsreader import Reader, masked_text_frame

OFFER_DEFLATE = [False]  # set by the suite's --deflate: offer permessage-deflate
MARKER = re.compile(rb"#B\d+:(\d+):")
OFFSET = re.compile(rb'"offset":(\d+)')
EPOCH = re.compile(rb'"epoch":"([^"]+)"')
PAYLOAD_BYTES = 100


def payload(sequence: int) -> str:
    """ASCII, no quotes or backslashes: travels unchanged inside every adapter's framing."""
    head = f"#B{sequence}:{time.monotonic_ns()}:"
    return head + "x" * max(0, PAYLOAD_BYTES - len(head))


@dataclass
class Deliveries:
    """Messages delivered to a group of connections, and their latencies in nanoseconds."""

    count: int = 0
    first_at: int = 0
    last_at: int = 0
    time_every_message: bool = False
    latencies: list[int] = field(default_factory=list)
    _target: int = 0
    _reached: asyncio.Future[None] | None = None

    def on_frame(self, frame: bytes) -> None:
        found = frame.count(b"#B")
        if not found:
            return
        now = time.monotonic_ns()
        self.count += found
        self.last_at = now
        if not self.first_at:
            self.first_at = now
        if self.time_every_message:
            self.latencies.extend(now - int(stamp) for stamp in MARKER.findall(frame))
        else:
            oldest = MARKER.search(frame)
            if oldest is not None:
                self.latencies.append(now - int(oldest.group(1)))
        if self._reached is not None and self.count >= self._target and not self._reached.done():
            self._reached.set_result(None)

    async def reach(self, target: int, limit: float) -> bool:
        """Wait until `target` messages were delivered; False on timeout."""
        if self.count >= target:
            return True
        self._target = target
        self._reached = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._reached, limit)
            return True
        except TimeoutError:
            return False
        finally:
            self._reached = None

    async def drain(self, target: int, quiet: float = 3.0, limit: float = 120.0) -> None:
        """Wait for `target` deliveries while they keep coming: stop after `quiet` seconds
        without progress (the rest is lost) or `limit` seconds in all."""
        deadline = time.monotonic() + limit
        while self.count < target and time.monotonic() < deadline:
            before = self.count
            if not await self.reach(target, quiet) and self.count == before:
                return

    def reset(self, time_every_message: bool) -> None:
        self.count = self.first_at = self.last_at = 0
        self.latencies = []
        self.time_every_message = time_every_message


class Link(Reader):
    """One connection: runs the adapter's setup steps, then counts what it is sent."""

    def __init__(self, adapter: Adapter, deliveries: Deliveries, track: bool = False) -> None:
        super().__init__(self._on_text)
        self.adapter = adapter
        self.deliveries = deliveries
        self.expect: bytes | None = None
        self.step_done: asyncio.Future[None] | None = None
        # With `track` (hubbub, one channel with history per link): the newest offset and the
        # epoch seen, for a reconnect that recovers what it missed.
        self.track = track
        self.offset: int | None = None
        self.epoch: str | None = None

    def _on_text(self, frame: bytes) -> None:
        if self.track:
            self._follow(frame)
        if self.expect is not None:
            if self.expect in frame:
                self.expect = None
                if self.step_done is not None and not self.step_done.done():
                    self.step_done.set_result(None)
            self.deliveries.on_frame(frame)  # a subscribe reply may carry recovered publications
            return
        reply = self.adapter.answer(frame)
        if reply is not None:
            self.send(reply)
            return
        self.deliveries.on_frame(frame)

    def _follow(self, frame: bytes) -> None:
        offsets = OFFSET.findall(frame)
        if offsets:
            self.offset = int(offsets[-1])
        epoch = EPOCH.search(frame)
        if epoch is not None:
            self.epoch = epoch.group(1).decode()

    def send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_text_frame(frame, self.adapter.opcode))

    def send_many(self, frames: Sequence[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            opcode = self.adapter.opcode
            self.transport.write(b"".join(masked_text_frame(frame, opcode) for frame in frames))

    def arm(self, expect: bytes) -> None:
        """Wait for a frame containing `expect` (armed before sending, so no reply slips by)."""
        self.expect = expect
        self.step_done = asyncio.get_running_loop().create_future()

    async def run_steps(self, steps: list[Step], limit: float) -> None:
        for index, (send, expect) in enumerate(steps):
            if index or self.step_done is None:  # a first step without a send was armed before the upgrade
                self.arm(expect)
            if isinstance(send, tuple):
                self.send_many(send)
            elif send is not None:
                self.send(send)
            assert self.step_done is not None
            await asyncio.wait_for(self.step_done, limit)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SseLink(asyncio.Protocol):
    """One Server-Sent Events subscriber: counts the publications in each complete batch of events."""

    def __init__(self, deliveries: Deliveries) -> None:
        self.deliveries = deliveries
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.subscribed = asyncio.get_running_loop().create_future()
        self._wanted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.rfind(b"\n\n")  # events end with a blank line: count whole ones only
        if end < 0:
            return
        complete = bytes(self.buffer[: end + 2])
        del self.buffer[: end + 2]
        if not self.subscribed.done():
            if not complete.startswith(b"HTTP/1.1 200"):
                self.subscribed.set_exception(ConnectionError(complete[:200].decode(errors="replace")))
                return
            self._wanted -= complete.count(b"event: subscribed")
            if self._wanted > 0:
                return
            self.subscribed.set_result(None)
        self.deliveries.on_frame(complete)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, frame: bytes) -> None:
        raise NotImplementedError("an SSE subscriber cannot publish: run hubbub-sse on fanout, channels or idle")

    def send_many(self, frames: Sequence[bytes]) -> None:
        self.send(b"")


Connection = Link | SseLink


async def open_sse_link(
    adapter: HubbubSseAdapter, port: int, channels: list[str], deliveries: Deliveries, source: str
) -> SseLink:
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(lambda: SseLink(deliveries), "127.0.0.1", port, local_addr=(source, 0))
    link._wanted = len(channels)
    assert link.transport is not None
    link.transport.write(adapter.sse_request(channels, port))
    try:
        await asyncio.wait_for(link.subscribed, 15)
    except BaseException:
        link.close()
        raise
    return link


TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)  # Linux 4.11+


async def _fast_open_socket(source: str, port: int) -> socket.socket:
    """A client socket whose SYN carries the first write (TCP Fast Open, once the server sent a
    cookie on an earlier connection)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def open_link(
    adapter: Adapter,
    port: int,
    channels: list[str],
    deliveries: Deliveries,
    source: str = "127.0.0.1",
    fast_open: bool = False,
    since: dict[str, tuple[int, str]] | None = None,
    track: bool = False,
) -> Connection:
    """Upgrade, run the setup steps (subscribe to `channels`), return the counting connection.
    An SSE adapter's subscribers (those with channels) read Server-Sent Events instead."""
    if isinstance(adapter, HubbubSseAdapter) and channels:
        return await open_sse_link(adapter, port, channels, deliveries, source)
    if isinstance(adapter, HubbubGraphQLAdapter) and not channels:
        adapter = HUBBUB  # the publisher speaks hubbub's own protocol
    loop = asyncio.get_running_loop()
    if fast_open:
        sock = await _fast_open_socket(source, port)
        _, link = await loop.create_connection(lambda: Link(adapter, deliveries, track), sock=sock)
    else:
        _, link = await loop.create_connection(
            lambda: Link(adapter, deliveries, track), "127.0.0.1", port, local_addr=(source, 0)
        )
    assert link.transport is not None
    steps = adapter.steps(channels, since)
    if steps and steps[0][0] is None:  # the server speaks first (Socket.IO's open packet)
        link.arm(steps[0][1])
    key = base64.b64encode(os.urandom(16)).decode()
    protocol_line = f"Sec-WebSocket-Protocol: {adapter.subprotocol}\r\n" if adapter.subprotocol else ""
    if OFFER_DEFLATE[0]:
        protocol_line += "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
    link.transport.write(
        (
            f"GET {adapter.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{protocol_line}\r\n"
        ).encode()
    )
    try:
        await asyncio.wait_for(link.handshaken, 15)
        await link.run_steps(steps, 15)
    except BaseException:
        link.close()
        raise
    return link


async def open_many(
    adapter: Adapter,
    port: int,
    channel_sets: list[list[str]],
    deliveries: Deliveries,
    concurrency: int = 50,
    fast_open: bool = False,
    track: bool = False,
) -> tuple[list[Connection], float]:
    """Open one link per channel set, `concurrency` handshakes at a time; returns links and seconds."""
    gate = asyncio.Semaphore(concurrency)
    sources = [f"127.0.0.{1 + i}" for i in range(4)]  # spread over source IPs: enough ports for 20k

    async def one(index: int, channels: list[str]) -> Connection:
        async with gate:
            source = sources[index % len(sources)]
            return await open_link(adapter, port, channels, deliveries, source, fast_open, track=track)

    started = time.perf_counter()
    links = await asyncio.gather(*(one(i, channels) for i, channels in enumerate(channel_sets)))
    return list(links), time.perf_counter() - started


def percentile(values: list[int], fraction: float) -> float:
    """Milliseconds at `fraction` of sorted nanosecond samples (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1e6
