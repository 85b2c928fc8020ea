"""hubbub.json.v1: JSON messages in text frames, several per frame separated by "\\n".

The worked example of a wire protocol (docs/architecture.md): its payload is the internal form
itself, so it converts nothing, and decoding is the shared JSON command decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hubbub import protocol
from hubbub.wire.base import UnsupportedFrame


@dataclass(frozen=True, slots=True)
class JsonV1:
    subprotocol: str = protocol.SUBPROTOCOL_JSON
    binary: bool = False
    from_internal: Callable[[bytes], bytes] | None = None  # the internal form is this protocol

    def decode(self, message: str | bytes) -> list[protocol.Command]:
        if isinstance(message, bytes):
            raise UnsupportedFrame(f"binary frames are not part of {self.subprotocol}")
        return protocol.decode_frame(message)


JSON_V1 = JsonV1()
