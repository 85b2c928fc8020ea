"""The wire protocols this server speaks, by WebSocket subprotocol (wire/base.py says what one is).

Adding one: write a module with a `WireProtocol` (decode, from_internal, subprotocol, binary)
and add it to `PROTOCOLS`; the handshake offers it and each connection that asks gets it.
"""

from __future__ import annotations

from hubbub.wire.base import UnsupportedFrame, WireProtocol
from hubbub.wire.json_v1 import JSON_V1
from hubbub.wire.msgpack_v1 import MSGPACK_V1

__all__ = ["DEFAULT", "PROTOCOLS", "UnsupportedFrame", "WireProtocol", "for_subprotocol"]

# In order of preference when a client offers several it does not rank.
PROTOCOLS: dict[str, WireProtocol] = {wire.subprotocol: wire for wire in (JSON_V1, MSGPACK_V1)}
DEFAULT: WireProtocol = JSON_V1  # a client that offers no subprotocol


def for_subprotocol(name: str | None) -> WireProtocol:
    """The protocol a handshake selected (None: the client offered none)."""
    return DEFAULT if name is None else PROTOCOLS[name]
