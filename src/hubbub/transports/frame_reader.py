"""Client frames split at their boundaries, and the common ones read without the parser.

Most of what clients send is one small, masked, unfragmented text frame: a publish, a typing
signal; and the pongs that answer the keepalive's pings. websockets' sans-I/O parser reads each
through generators, a stream reader and a Frame object, which cost a chat or channels server
more than the command itself (docs/benchmarks.md), and a connection that never needs the parser
need not have one (wsconnection.py makes it on first use). `FrameReader` reads those frames'
headers here and unmasks them with websockets' own C speedup: whole data frames go to `message`,
pings and pongs (at most 125 bytes, as RFC 6455 section 5.5 allows) to `control`. Every other
frame (close frames, fragments, RSV bits, an unmasked, oversized or malformed frame, any frame on
a connection with an extension) goes to the parser, and only ever whole, so the parser is always
at a frame boundary when it gets one. The first frame it gets partially (one declared too big)
hands it the stream for good: then nothing is split here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

try:  # websockets' C speedup, as its own parser uses it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a websockets build without its C extension
    from websockets.utils import apply_mask

FIN_TEXT: Final = 0x81  # FIN, no RSV bits, opcode 1
FIN_BINARY: Final = 0x82  # FIN, no RSV bits, opcode 2
FIN_PING: Final = 0x89  # FIN, no RSV bits, opcode 9
FIN_PONG: Final = 0x8A  # FIN, no RSV bits, opcode 10
MASKED: Final = 0x80
MAX_CONTROL_PAYLOAD: Final = 125  # RFC 6455 section 5.5


def frame_bounds(buffer: bytes | bytearray, start: int) -> tuple[int, int]:
    """(payload start, frame end) of the frame that starts at `start`; (-1, -1) while its
    header is incomplete. RFC 6455 section 5.2."""
    available = len(buffer) - start
    if available < 2:
        return -1, -1
    second = buffer[start + 1]
    length = second & 0x7F
    header = 2
    if length == 126:
        if available < 4:
            return -1, -1
        length = int.from_bytes(buffer[start + 2 : start + 4], "big")
        header = 4
    elif length == 127:
        if available < 10:
            return -1, -1
        length = int.from_bytes(buffer[start + 2 : start + 10], "big")
        header = 10
    if second & MASKED:
        header += 4
    return start + header, start + header + length


class FrameReader:
    """One connection's inbound bytes: whole simple frames to `message` and `control`, the rest
    to `parse`.

    `simple()` says whether the connection may take a frame the fast way now (open, no
    fragmented message in progress, no extension). `message` gets the payload, str for text
    (invalid UTF-8 raises UnicodeDecodeError, as decoding a parsed frame does); `control` gets
    the opcode (9 ping, 10 pong) and the payload.
    """

    __slots__ = ("_end", "_partial", "parser_owns_stream")

    def __init__(self) -> None:
        self._partial: bytearray | None = None  # the start of a simple frame, the rest to come
        self._end = 0  # that frame's length once its header is complete
        self.parser_owns_stream = False

    def feed(
        self,
        data: bytes,
        max_size: int | None,
        simple: Callable[[], bool],
        message: Callable[[str | bytes], None],
        control: Callable[[int, bytes], None],
        parse: Callable[[bytes], None],
    ) -> None:
        if self.parser_owns_stream:
            parse(data)
            return
        buffer: bytes
        partial = self._partial
        if partial is not None:
            partial += data  # amortised: a frame sent byte by byte is not copied per byte
            if len(partial) < self._end:
                return
            buffer = bytes(partial)
            self._partial = None
        else:
            buffer = data
        start, size = 0, len(buffer)
        while start < size:
            first = buffer[start]
            payload_start, end = frame_bounds(buffer, start)
            masked = size - start < 2 or buffer[start + 1] & MASKED != 0
            is_data = first == FIN_TEXT or first == FIN_BINARY
            if is_data:
                candidate = masked
                within = end < 0 or max_size is None or end - payload_start <= max_size
            else:
                candidate = (first == FIN_PING or first == FIN_PONG) and masked
                within = end < 0 or end - payload_start <= MAX_CONTROL_PAYLOAD
            if end < 0 or end > size:  # the rest of this frame is still to come
                if candidate and within and simple():
                    self._partial = bytearray(buffer[start:])
                    self._end = end - start if end >= 0 else 0
                    return
                self.parser_owns_stream = True  # a partial frame: the parser keeps its state now
                parse(buffer[start:])
                return
            if candidate and within and simple():
                mask = buffer[payload_start - 4 : payload_start]
                payload = apply_mask(buffer[payload_start:end], mask)
                start = end
                if is_data:
                    message(payload.decode() if first == FIN_TEXT else payload)
                else:
                    control(first & 0x0F, payload)
            else:
                parse(buffer[start:end])  # whole: the parser ends at a frame boundary again
                start = end
