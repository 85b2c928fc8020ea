"""TEST ONLY (setting `test_echo_endpoint`): /echo sends every message back, for the Autobahn
conformance suite (tests/hostile/test_autobahn.py). Off unless asked for."""

from __future__ import annotations

from hubbub.transports.admission import Admission
from hubbub.transports.wsconnection import Message, WebSocketConnection

ECHO_PATH = "/echo"


class EchoHandler:
    """Echoes each message on its connection; releases its address once the connection is gone."""

    __slots__ = ("_address", "_admission", "_connection")

    def __init__(self, connection: WebSocketConnection, admission: Admission, address: str) -> None:
        self._connection = connection
        self._admission = admission
        self._address = address

    async def handle(self, message: Message) -> None:
        self._connection.send_message(message)

    async def closed(self) -> None:
        self._admission.release(self._address)
