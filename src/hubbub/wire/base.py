"""What a wire protocol is: frames in -> commands, the internal message form out -> frames.

Inside the server every reply and push exists once, as hubbub.json.v1 message bytes (the
internal form): the session queues them, fan-out encodes a publication once for all its
subscribers, and a frame's payload is those messages joined by "\\n". A wire protocol decodes
what its clients send into commands and turns such a payload into its own frame payload; the
transport calls that once per distinct payload (FrameCache), so every connection of one
protocol shares the converted bytes: a channel's turn batch is encoded once per protocol in
use, never per subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hubbub.errors import ProtocolError
from hubbub.protocol import Command


class UnsupportedFrame(ProtocolError):
    """A frame of the wrong type for the protocol (text on a binary one, or the reverse): 1003."""


class WireProtocol(Protocol):
    """One wire protocol, chosen per connection at the handshake by its WebSocket subprotocol."""

    @property
    def subprotocol(self) -> str:
        """The Sec-WebSocket-Protocol value that selects it."""
        ...

    @property
    def binary(self) -> bool:
        """Its frames are binary (else text)."""
        ...

    @property
    def from_internal(self) -> Callable[[bytes], bytes] | None:
        """Turns an internal payload (JSON messages joined by "\\n") into this protocol's frame
        payload; None when the internal form is already its payload (no conversion at all)."""
        ...

    def decode(self, message: str | bytes) -> list[Command]:
        """The commands in one incoming message. Raises UnsupportedFrame for the wrong frame type
        and ProtocolError when there is nothing to answer (no command id); a command with bad
        parameters comes back with `Command.error` set, to be answered."""
        ...
