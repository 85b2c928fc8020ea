"""TEST ONLY (setting `test_echo_endpoint`): /echo sends every message back, for the Autobahn
conformance suite (tests/hostile/test_autobahn.py). Off unless asked for."""

from __future__ import annotations

from collections.abc import Callable

from hubbub.transports.wsconnection import Message, WebSocketConnection

ECHO_PATH = "/echo"


class EchoHandler:
    """Echoes each message on its connection; `release` runs once when the connection is gone."""

    __slots__ = ("_connection", "_release")

    def __init__(self, connection: WebSocketConnection, release: Callable[[], None]) -> None:
        self._connection = connection
        self._release = release

    async def handle(self, message: Message) -> None:
        self._connection.send_message(message)

    async def closed(self) -> None:
        self._release()
