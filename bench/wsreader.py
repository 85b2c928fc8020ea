"""A lean WebSocket client for load generation: asyncio Protocol, RFC 6455 framing by hand.

`websockets` would cost an await and a task switch per message; a load generator reading
hundreds of thousands of messages a second on one core cannot afford that. Server frames are
unmasked; what we send is masked (RFC 6455 section 5.3). Messages are handed to `on_text`;
compressed ones (permessage-deflate with server_no_context_takeover, as hubbub sends them) are
inflated first.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any


def masked_text_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame: text, or another opcode (0x2: binary)."""
    head = bytearray([0x80 | opcode])
    length = len(payload)
    if length < 126:
        head.append(0x80 | length)
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes(head) + key + masked


class Reader(asyncio.Protocol):
    """One connection. `read_budget` (bytes/s) throttles reading: a slow reader on a bad network."""

    def __init__(self, on_text: Callable[[bytes], None], read_budget: float | None = None) -> None:
        self.on_text = on_text
        self.read_budget = read_budget
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.bytes_read = 0
        self._window_start = 0.0
        self._window_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.bytes_read += len(data)
        self.buffer += data
        if not self.handshaken.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(ConnectionError(head.decode(errors="replace")))
                return
            self.handshaken.set_result(None)
        self._parse()
        if self.read_budget is not None:
            self._throttle(len(data))

    def _throttle(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_bytes = now, 0
        self._window_bytes += size
        if self._window_bytes >= (self.read_budget or 0) and self.transport is not None:
            self.transport.pause_reading()
            loop.call_at(self._window_start + 1.0, self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _parse(self) -> None:
        buffer = self.buffer
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = struct.unpack_from("!H", buffer, offset + 2)[0]
                start = offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = struct.unpack_from("!Q", buffer, offset + 2)[0]
                start = offset + 10
            if size < start + length:
                break
            if opcode == 0x1 or opcode == 0x2:
                payload = bytes(buffer[start : start + length])
                if buffer[offset] & 0x40:  # RSV1: permessage-deflate, the server keeps no context
                    payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
                self.on_text(payload)
            elif opcode == 0x9 and self.transport is not None:  # ping: answer with a pong
                payload = bytes(buffer[start : start + length])
                frame = masked_text_frame(payload)
                self.transport.write(bytes([0x8A]) + frame[1:])
            elif opcode == 0x8:  # echo the close (RFC 6455 section 5.5.1), then let the server hang up
                if self.transport is not None and not self.transport.is_closing():
                    frame = masked_text_frame(bytes(buffer[start : start + min(length, 2)]))
                    self.transport.write(bytes([0x88]) + frame[1:])
                if not self.closed.done():
                    self.closed.set_result(None)
            offset = start + length
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send_json(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(masked_text_frame(json.dumps(message).encode()))


async def open_reader(
    host: str, port: int, path: str, on_text: Callable[[bytes], None], read_budget: float | None = None
) -> Reader:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: Reader(on_text, read_budget), host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    assert protocol.transport is not None
    protocol.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: hubbub.json.v1\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(protocol.handshaken, 15)
    return protocol
