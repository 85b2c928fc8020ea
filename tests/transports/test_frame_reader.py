"""The frame reader in front of websockets' parser: whatever way TCP cuts the stream, the same
messages come out in the same order, the parser only ever sees whole frames until it owns the
stream, and what the parser refuses (oversized, unmasked, RSV bits) still reaches it."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from hubbub.transports.frame_reader import FrameReader
from tests.wire import client_frame

MAX_SIZE = 1000
Logical = tuple[str, str | bytes]  # ("message", payload), ("ping", data) or ("pong", data)


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """A client frame (tests/wire.py builds it), with RSV bits set when asked."""
    built = client_frame(payload, opcode, fin=fin, mask=mask)
    return bytes([built[0] | rsv]) + built[1:]


class Harness:
    """A FrameReader feeding the real sans-I/O parser, as WebSocketConnection does; both paths'
    output as one list of logical messages."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.protocol = ServerProtocol(state=State.OPEN, max_size=MAX_SIZE)
        self.out: list[Logical] = []
        self.fast = 0
        self._fragments: list[bytes] | None = None
        self._text = False

    def simple(self) -> bool:
        return self.protocol.state is State.OPEN and self.protocol.current_size is None

    def message(self, payload: str | bytes) -> None:
        self.fast += 1
        self.out.append(("message", payload))

    def control(self, opcode: int, payload: bytes) -> None:
        self.fast += 1
        self.out.append(({0x9: "ping", 0xA: "pong"}[opcode], payload))

    def parse(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            assert isinstance(event, Frame)
            if event.opcode is Opcode.PING:
                self.out.append(("ping", bytes(event.data)))
            elif event.opcode is Opcode.PONG:
                self.out.append(("pong", bytes(event.data)))
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._text = event.opcode is Opcode.TEXT
                self._fragments = [bytes(event.data)]
            elif event.opcode is Opcode.CONT:
                assert self._fragments is not None
                self._fragments.append(bytes(event.data))
            if event.fin and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                assert self._fragments is not None
                joined = b"".join(self._fragments)
                self.out.append(("message", joined.decode() if self._text else joined))
                self._fragments = None

    def feed(self, data: bytes) -> None:
        self.reader.feed(data, MAX_SIZE, self.simple, self.message, self.control, self.parse)


STREAM: list[tuple[bytes, list[Logical]]] = [
    (frame(0x1, b'{"id":1,"publish":{}}'), [("message", '{"id":1,"publish":{}}')]),
    (frame(0x9, b"ping!"), [("ping", b"ping!")]),
    (frame(0xA, b"p" * 125), [("pong", b"p" * 125)]),  # the largest control frame
    (frame(0xA, b""), [("pong", b"")]),
    (frame(0x2, b"\x00\x01binary"), [("message", b"\x00\x01binary")]),
    (frame(0x1, "h\u00e9llo".encode() * 40), [("message", "h\u00e9llo" * 40)]),  # 16-bit length
    (
        frame(0x1, b"frag", fin=False) + frame(0x9, b"mid") + frame(0x0, b"mented"),
        [("ping", b"mid"), ("message", "fragmented")],
    ),
    (frame(0x1, b"after"), [("message", "after")]),
]
WIRE = b"".join(data for data, _ in STREAM)
EXPECTED = [message for _, messages in STREAM for message in messages]


def test_every_cut_of_the_stream_gives_the_same_messages() -> None:
    for cut in range(len(WIRE) + 1):
        harness = Harness()
        harness.feed(WIRE[:cut])
        harness.feed(WIRE[cut:])
        assert harness.out == EXPECTED, f"cut at byte {cut}"
        assert harness.protocol.parser_exc is None and harness.protocol.state is State.OPEN


def test_simple_frames_sent_byte_by_byte_never_reach_the_parser() -> None:
    frames = [frame(0x1, b"x" * n) for n in (1, 125, 126, 700)]
    harness = Harness()
    for byte in b"".join(frames):
        harness.feed(bytes([byte]))
    assert harness.out == [("message", "x" * n) for n in (1, 125, 126, 700)]
    assert harness.fast == 4 and not harness.reader.parser_owns_stream


def test_pings_and_pongs_sent_byte_by_byte_never_reach_the_parser() -> None:
    harness = Harness()
    for byte in frame(0x9, b"ping!") + frame(0xA, b"pong!") + frame(0x1, b"later"):
        harness.feed(bytes([byte]))
    assert harness.out == [("ping", b"ping!"), ("pong", b"pong!"), ("message", "later")]
    assert harness.fast == 3 and not harness.reader.parser_owns_stream


def test_a_frame_declared_too_big_hands_the_parser_the_stream_for_good() -> None:
    harness = Harness()
    harness.feed(frame(0x1, b"x" * (MAX_SIZE + 1))[:20])
    assert harness.reader.parser_owns_stream
    harness.feed(frame(0x1, b"later"))
    assert harness.fast == 0


def test_a_frame_declared_past_max_size_is_refused_by_the_parser_at_its_header() -> None:
    harness = Harness()
    harness.feed(frame(0x1, b"x" * (MAX_SIZE + 1))[:20])  # the payload never needs to arrive
    assert harness.protocol.close_sent is not None and harness.protocol.close_sent.code == 1009
    assert harness.out == []


@pytest.mark.parametrize(
    ("refused", "code"),
    [
        (frame(0x1, b"unmasked", mask=False), 1002),  # a client must mask
        (frame(0x1, b"rsv", rsv=0x40), 1002),  # no extension negotiated
        (frame(0x3, b"reserved opcode"), 1002),
        (frame(0x0, b"continuation of nothing"), 1002),
        (frame(0x9, b"p" * 126), 1002),  # a control frame over 125 bytes
        (frame(0xA, b"unmasked pong", mask=False), 1002),
        (frame(0x9, b"fragmented ping", fin=False), 1002),  # control frames are never fragmented
        (frame(0xA, b"rsv", rsv=0x40), 1002),
    ],
)
def test_what_the_parser_refuses_still_reaches_it(refused: bytes, code: int) -> None:
    harness = Harness()
    harness.feed(frame(0x1, b"before") + refused + frame(0x1, b"dropped"))
    assert harness.protocol.close_sent is not None and harness.protocol.close_sent.code == code
    assert harness.out == [("message", "before")]


def test_invalid_utf8_in_a_text_frame_raises_as_decoding_does() -> None:
    harness = Harness()
    with pytest.raises(UnicodeDecodeError):
        harness.feed(frame(0x1, b"\xff\xfe"))
