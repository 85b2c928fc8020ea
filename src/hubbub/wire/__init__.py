"""The wire protocols this server speaks, by WebSocket subprotocol (wire/base.py says what one is).

Adding one: write a module with a `WireProtocol` (decode, from_internal, subprotocol, binary)
and add it to `PROTOCOLS`; the handshake offers it and each connection that asks gets it.
Centrifugo's client protocol (JSON and Protobuf) is spoken at its own path instead
(`centrifugo_protocols`): its JSON form offers no subprotocol, as hubbub's own JSON may not.
"""

from __future__ import annotations

from hubbub.wire import centrifugo
from hubbub.wire.base import UnsupportedFrame, WireProtocol
from hubbub.wire.centrifugo_json import CentrifugoJson
from hubbub.wire.json_v1 import JSON_V1
from hubbub.wire.msgpack_v1 import MSGPACK_V1

__all__ = [
    "DEFAULT",
    "PROTOBUF_AVAILABLE",
    "PROTOCOLS",
    "UnsupportedFrame",
    "WireProtocol",
    "centrifugo_protocols",
    "for_subprotocol",
]

# In order of preference when a client offers several it does not rank.
PROTOCOLS: dict[str, WireProtocol] = {wire.subprotocol: wire for wire in (JSON_V1, MSGPACK_V1)}
DEFAULT: WireProtocol = JSON_V1  # a client that offers no subprotocol
try:  # hubbub[protobuf]: Centrifugo's Protobuf encoding
    from hubbub.wire.centrifugo_protobuf import CentrifugoProtobuf
except ImportError:
    PROTOBUF_AVAILABLE = False
else:
    PROTOBUF_AVAILABLE = True


def for_subprotocol(name: str | None) -> WireProtocol:
    """The protocol a handshake selected (None: the client offered none)."""
    return DEFAULT if name is None else PROTOCOLS[name]


def centrifugo_protocols(refresh_before: float) -> dict[str | None, WireProtocol]:
    """Centrifugo's encodings by the subprotocol that selects them (None: JSON), with this
    server's refresh timing; Protobuf only with the protobuf runtime installed."""
    shaper = centrifugo.Shaper(refresh_before)
    protocols: dict[str | None, WireProtocol] = {None: CentrifugoJson(shaper)}
    if PROTOBUF_AVAILABLE:
        protocols[centrifugo.SUBPROTOCOL_PROTOBUF] = CentrifugoProtobuf(shaper)
    return protocols
