"""A bare RFC 6455 client over asyncio streams, for tests that need control of every byte
(a client that stops reading, malformed frames). Shares no code with hubbub or `websockets`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any
from urllib.parse import urlsplit


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bool = True) -> bytes:
    """One frame as a client sends it (RFC 6455 section 5.2: masked)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 2**16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class BareWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response_head = ""

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    @classmethod
    async def open(cls, url: str, extra_headers: str = "", subprotocol: str | None = "hubbub.json.v1") -> BareWebSocket:
        """Upgrade by hand; `subprotocol` None offers none (Centrifugo's JSON)."""
        parts = urlsplit(url)
        # A small limit makes the stream stop reading the socket when the test stops reading.
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=2**16)
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol is not None else ""
        writer.write(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{offer}"
                f"{extra_headers}\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.decode(errors="replace"))
        socket = cls(reader, writer)
        socket.response_head = head.decode(errors="replace")
        return socket

    async def send_json(self, message: dict[str, Any]) -> None:
        self.writer.write(client_frame(json.dumps(message).encode()))
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        first, payload = await self.read_frame_with_flags()
        return first & 0x0F, payload

    async def read_frame_with_flags(self) -> tuple[int, bytes]:
        """(first header byte: FIN, RSV1-3 and opcode; payload) of the next frame."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first, await self.reader.readexactly(length)

    async def read_messages(self) -> list[dict[str, Any]]:
        """The messages of the next text frame; pings on the way are answered."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x9:
                self.writer.write(client_frame(payload, opcode=0xA))
                continue
            assert opcode == 0x1, f"expected a text frame, got opcode {opcode}"
            return [json.loads(line) for line in payload.split(b"\n")]

    async def read_replies(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The next `count` messages, however the server framed them (one frame or several)."""
        messages: list[dict[str, Any]] = []
        while len(messages) < count:
            messages += await asyncio.wait_for(self.read_messages(), timeout)
        return messages

    async def close_code(self) -> int | None:
        """Read (and drop) frames until the close frame; return its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self) -> None:
        self.writer.close()
