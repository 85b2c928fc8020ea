"""hubbub.msgpack.v1: the same messages as MessagePack in binary frames.

A frame holds one MessagePack value: a map (one message) or an array of maps (several, in
order). Commands are converted to the internal JSON form on the way in; outgoing payloads are
converted once per frame payload, shared by every MessagePack subscriber of a fan-out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from hubbub import protocol
from hubbub.errors import ProtocolError
from hubbub.wire.base import UnsupportedFrame

_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


def msgpack_from_json_lines(payload: bytes) -> bytes:
    """One MessagePack frame for newline-separated JSON messages."""
    if b"\n" not in payload:
        return _encoder.encode(msgspec.json.decode(payload))
    return _encoder.encode([msgspec.json.decode(line) for line in payload.split(b"\n")])


def json_lines_from_msgpack(frame: bytes) -> bytes:
    """A MessagePack frame from a client as newline-separated JSON commands (for decode_frame).

    Binary values become base64 strings, as JSON subscribers would see them; maps with keys
    that are not strings cannot be commands.
    """
    try:
        value = msgspec.msgpack.decode(frame)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not MessagePack: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ProtocolError("empty frame")
    try:
        return b"\n".join(_json.encode(item) for item in items)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ProtocolError(f"not a command: {exc}") from None


@dataclass(frozen=True, slots=True)
class MsgpackV1:
    subprotocol: str = protocol.SUBPROTOCOL_MSGPACK
    binary: bool = True
    from_internal: Callable[[bytes], bytes] | None = msgpack_from_json_lines

    def decode(self, message: str | bytes) -> list[protocol.Command]:
        if isinstance(message, str):
            raise UnsupportedFrame(f"text frames are not part of {self.subprotocol}")
        return protocol.decode_frame(json_lines_from_msgpack(message))


MSGPACK_V1 = MsgpackV1()
