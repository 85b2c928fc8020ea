"""Received messages as a session's commands: what every transport does with what a client sent."""

from __future__ import annotations

from hubbub import wire
from hubbub.core.session import Session
from hubbub.core.session import State as SessionState
from hubbub.errors import DisconnectCode, ProtocolError
from hubbub.protocol import Command


async def run_message(session: Session, wire_protocol: wire.WireProtocol, message: str | bytes) -> None:
    """One received message as its session's commands; a frame that cannot be read closes it
    (1003 for the wrong frame type, 3501 for no command to answer). Every transport feeds it."""
    for command in decode_message(session, wire_protocol, message):
        await session.handle(command)


def decode_message(session: Session, wire_protocol: wire.WireProtocol, message: str | bytes) -> list[Command]:
    """The commands of one received message; none, and the session closed, when it cannot be read."""
    if session.state is SessionState.CLOSED:  # we disconnected it: ignore what was in flight
        return []
    try:
        return wire_protocol.decode(message)
    except wire.UnsupportedFrame as exc:
        session.disconnect(DisconnectCode.UNSUPPORTED_DATA, str(exc), notify=False)
    except ProtocolError as exc:
        session.disconnect(DisconnectCode.BAD_REQUEST, f"bad request: {exc}", notify=False)
    return []
