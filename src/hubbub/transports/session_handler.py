"""An open WebSocket connection's messages as its Session's commands, through its wire protocol."""

from __future__ import annotations

from hubbub import wire
from hubbub.core.hub import Hub
from hubbub.core.session import Session
from hubbub.transports.admission import Admission
from hubbub.transports.messages import run_message
from hubbub.transports.wsconnection import Message, WebSocketConnection


class SessionHandler:
    """Runs one connection's messages as commands of its Session, decoded by its wire protocol."""

    __slots__ = ("_address", "_admission", "_connection", "_hub", "_wire", "session")

    def __init__(
        self,
        hub: Hub,
        session: Session,
        wire_protocol: wire.WireProtocol,
        admission: Admission,
        address: str,
        connection: WebSocketConnection,
    ) -> None:
        self._hub = hub
        self._connection = connection
        self.session = session
        self._wire = wire_protocol
        self._admission = admission
        self._address = address

    async def handle(self, message: Message) -> None:
        await run_message(self.session, self._wire, message)

    async def closed(self) -> None:
        connection = self._connection
        self.session.closed(connection.close_code, connection.close_reason or "")
        try:
            await self._hub.remove_session(self.session)
        finally:
            self._admission.release(self._address)
