"""WebSocket frames built by hand for the fan-out: one frame per payload, shared by every subscriber.

A server frame is never masked (RFC 6455 section 5.1), so the bytes are the same for every
connection of one encoding: `FrameCache` builds them once and each connection's transport gets
the same object. tests/transports/test_internals.py checks them byte for byte against
`websockets`' own serialisation.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Final

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_PING: Final = 0x9
OP_PONG: Final = 0xA


def data_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final RFC 6455 data frame (a server never masks, section 5.1)."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def control_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked ping or pong; its payload is at most 125 bytes (RFC 6455 section 5.5)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def text_frame(payload: bytes) -> bytes:
    return data_frame(OP_TEXT, payload)


RSV1: Final = 0x40  # permessage-deflate: this message is compressed (RFC 7692 section 6)
SYNC_TAIL: Final = b"\x00\x00\xff\xff"
DEFLATE_MEM_LEVEL: Final = 5  # the websockets default: less memory per compressor


def deflated_frame(opcode: int, payload: bytes, window_bits: int) -> bytes:
    """A compressed permessage-deflate message without context takeover (RFC 7692 section 7.2.1):
    the same bytes for every connection that negotiated this window, so built once per fan-out."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, DEFLATE_MEM_LEVEL)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = bytearray(data_frame(opcode, data[:-4] if data.endswith(SYNC_TAIL) else data))
    frame[0] |= RSV1
    return bytes(frame)


class FrameCache:
    """The last outbox payload framed, so a fan-out converts and frames it once for every
    connection of one encoding (JSON text frames, or MessagePack binary frames)."""

    __slots__ = ("_convert", "_deflated", "_deflated_key", "_opcode", "data", "frame", "payload")

    def __init__(self, opcode: int = OP_TEXT, convert: Callable[[bytes], bytes] | None = None) -> None:
        self._opcode = opcode
        self._convert = convert
        self.payload = b""
        self.data = b""
        self.frame = data_frame(opcode, b"")
        self._deflated_key: tuple[bytes, int] = (b"", 0)
        self._deflated = b""

    @property
    def binary(self) -> bool:
        return self._opcode == OP_BINARY

    def _load(self, payload: bytes) -> None:
        self.payload = payload
        self.data = self._convert(payload) if self._convert is not None else payload
        # A conversion may leave nothing for the client (Centrifugo drops hubbub-only pushes):
        # then no frame at all, and writing b"" sends nothing.
        self.frame = data_frame(self._opcode, self.data) if self.data else b""

    def frame_for(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self._load(payload)
        return self.frame

    def data_for(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self._load(payload)
        return self.data

    def deflated_frame_for(self, payload: bytes, window_bits: int) -> bytes:
        payload_seen, bits_seen = self._deflated_key
        if payload is not payload_seen or window_bits != bits_seen:
            data = self.data_for(payload)
            self._deflated = deflated_frame(self._opcode, data, window_bits) if data else b""
            self._deflated_key = (payload, window_bits)
        return self._deflated
