"""Centrifugo's client protocol in Protocol Buffers, the `centrifuge-protobuf` subprotocol.

Binary frames of varint-length-delimited messages (`Command` in, `Reply` out), parsed and
written by Google's protobuf runtime (its upb C core) from centrifugo.proto; the generated
module is committed (`make proto` regenerates it). The mapping to hubbub's commands and
messages is centrifugo.py's. Data fields carry JSON bytes: hubbub's publications are JSON
values shared with its JSON clients, so bytes that are not JSON get error 107.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, Message
from msgspec import Raw

from hubbub import protocol
from hubbub.errors import ProtocolError
from hubbub.wire import centrifugo
from hubbub.wire import centrifugo_pb2 as pb
from hubbub.wire.base import UnsupportedFrame

MAX_VARINT_BYTES = 10  # a uint64 takes at most ten 7-bit groups


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at `position` and the position after it; ProtocolError if it runs off the end
    or is longer than any uint64."""
    result = shift = 0
    end = min(len(data), position + MAX_VARINT_BYTES)
    while position < end:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise ProtocolError("a message length that is not a varint")


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_messages(frame: bytes) -> list[bytes]:
    """The length-delimited messages of one frame; ProtocolError when a length lies."""
    messages = []
    position = 0
    while position < len(frame):
        length, position = read_varint(frame, position)
        end = position + length
        if end > len(frame):
            raise ProtocolError(f"a message claims {length} bytes, the frame has {len(frame) - position} left")
        messages.append(frame[position:end])
        position = end
    return messages


def _data_of(data: bytes) -> Raw:
    return protocol.validate_json(data) if data else protocol.NULL


def decode_commands(frame: bytes) -> list[protocol.Command]:
    """The hubbub commands in one binary frame (pongs, the empty commands, yield none)."""
    commands = []
    for body in split_messages(frame):
        command = pb.Command()  # type: ignore[attr-defined]  # protoc writes no stubs
        try:
            command.ParseFromString(body)
        except DecodeError as exc:
            raise ProtocolError(f"not a Command: {exc}") from None
        method = next((name for name in centrifugo.METHODS if command.HasField(name)), "")
        request = getattr(command, method) if method else None
        built = centrifugo.command_for(command.id, method, request, _data_of)
        if built is not None:
            commands.append(built)
    return commands


_MAPS: dict[tuple[str, str], bool] = {}


def _is_map(message: Message, name: str) -> bool:
    key = (message.DESCRIPTOR.full_name, name)
    known = _MAPS.get(key)
    if known is None:
        descriptor = message.DESCRIPTOR.fields_by_name[name].message_type
        known = _MAPS[key] = descriptor is not None and descriptor.GetOptions().map_entry
    return known


def fill(message: Message, shaped: dict[str, Any]) -> Message:
    """Set `message`'s fields from a shaped dict (centrifugo.py): dicts are sub-messages or
    maps, lists repeated messages, Raw JSON becomes bytes."""
    for name, value in shaped.items():
        if isinstance(value, dict):
            target = getattr(message, name)
            if _is_map(message, name):
                for key, item in value.items():
                    fill(target[key], item)
            else:
                target.SetInParent()  # an empty result is still a result
                fill(target, value)
        elif isinstance(value, list):
            repeated = getattr(message, name)
            for item in value:
                fill(repeated.add(), item)
        elif isinstance(value, Raw):
            setattr(message, name, bytes(value))
        else:
            setattr(message, name, value)
    return message


def encode_replies(shaped: list[dict[str, Any]]) -> bytes:
    out = []
    for message in shaped:
        body = fill(pb.Reply(), message).SerializeToString()  # type: ignore[attr-defined]
        out.append(varint(len(body)))
        out.append(body)
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class CentrifugoProtobuf:
    """The wire protocol object (wire/base.py) for `centrifuge-protobuf`, with this server's timing."""

    shaper: centrifugo.Shaper
    subprotocol: str = centrifugo.SUBPROTOCOL_PROTOBUF
    binary: bool = True
    from_internal: Callable[[bytes], bytes] | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_internal", self._from_internal)

    def _from_internal(self, payload: bytes) -> bytes:
        return encode_replies(self.shaper.messages(payload))

    def decode(self, message: str | bytes) -> list[protocol.Command]:
        if isinstance(message, str):
            raise UnsupportedFrame(f"text frames are not part of {self.subprotocol}")
        return decode_commands(message)
