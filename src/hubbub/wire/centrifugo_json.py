"""Centrifugo's client protocol in JSON: newline-separated messages in text frames.

Spoken at `centrifugo_path` to a client that offers no subprotocol (centrifuge-js and the other
SDKs in their default mode). The mapping to hubbub's commands and messages is centrifugo.py's;
this module reads and writes JSON. Data fields are raw JSON, as in hubbub's own protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from msgspec import Raw, Struct

from hubbub import protocol
from hubbub.errors import ProtocolError
from hubbub.wire import centrifugo
from hubbub.wire.base import UnsupportedFrame

NAME = "centrifugo-json"  # no Sec-WebSocket-Protocol: the key of its frame cache


class _Recover(Struct):
    recover: bool = False
    offset: int = 0
    epoch: str = ""


class _Position(Struct):
    offset: int = 0
    epoch: str = ""


# Field names are Centrifugo's; fields hubbub does not use are skipped (no forbid_unknown_fields).
class _Request(Struct):
    channel: str = ""
    token: str = ""
    data: Raw = protocol.NULL
    recover: bool = False
    offset: int = 0
    epoch: str = ""
    name: str = ""
    version: str = ""
    subs: dict[str, _Recover] = {}
    method: str = ""
    limit: int = 0  # Centrifugo: 0 (or absent) asks only for the position, below 0 for everything
    since: _Position | None = None
    reverse: bool = False


class _Command(Struct):
    id: int = 0
    connect: _Request | None = None
    subscribe: _Request | None = None
    unsubscribe: _Request | None = None
    publish: _Request | None = None
    presence: _Request | None = None
    presence_stats: _Request | None = None
    history: _Request | None = None
    ping: _Request | None = None
    send: _Request | None = None
    rpc: _Request | None = None
    refresh: _Request | None = None
    sub_refresh: _Request | None = None


_decode_command = msgspec.json.Decoder(_Command).decode
_encode = msgspec.json.Encoder().encode


def _data_of(data: Raw) -> Raw:
    raw = bytes(data)
    if b"\n" in raw or b"\r" in raw:  # a raw newline would split hubbub's frames: re-encode compactly
        return protocol.validate_json(raw)
    return data


def decode_commands(message: bytes) -> list[protocol.Command]:
    """The hubbub commands in one JSON frame (pongs, the empty commands, yield none)."""
    commands = []
    for line in message.split(b"\n"):
        if not line.strip():
            continue
        try:
            command = _decode_command(line)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"not a command: {exc}") from None
        except (msgspec.DecodeError, RecursionError):  # msgspec bounds nesting depth
            raise ProtocolError("a command is a JSON object") from None
        method = next((name for name in centrifugo.METHODS if getattr(command, name) is not None), "")
        request = getattr(command, method) if method else None
        built = centrifugo.command_for(command.id, method, request, _data_of)
        if built is not None:
            commands.append(built)
    return commands


@dataclass(frozen=True, slots=True)
class CentrifugoJson:
    """The wire protocol object (wire/base.py) for Centrifugo's JSON, with this server's timing."""

    shaper: centrifugo.Shaper
    subprotocol: str = NAME
    binary: bool = False
    from_internal: Callable[[bytes], bytes] | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_internal", self._from_internal)

    def _from_internal(self, payload: bytes) -> bytes:
        return b"\n".join(_encode(message) for message in self.shaper.messages(payload))

    def decode(self, message: str | bytes) -> list[protocol.Command]:
        if isinstance(message, bytes):
            raise UnsupportedFrame("binary frames are not part of Centrifugo's JSON protocol")
        return decode_commands(message.encode())
