"""Centrifugo's SDKs on hubbub: the `centrifugo_path` endpoint's connections.

Each connection is an ordinary hubbub Session (tokens, namespaces, permissions, limits, history,
recovery) whose wire protocol is Centrifugo's, JSON or Protobuf (wire/centrifugo*.py). What the
protocol needs beyond decoding and encoding lives here: the server's pings (an empty reply every
`ping_interval`, which the SDKs time out on), close codes as the SDKs read them, and an
unsubscribe of a channel already ended answered as done (the SDKs reconnect on an unsubscribe
error).
"""

from __future__ import annotations

from hubbub import protocol
from hubbub.core.session import State as SessionState
from hubbub.errors import CommandError, DisconnectCode
from hubbub.transports.admission import Admission
from hubbub.transports.messages import decode_message
from hubbub.transports.session_handler import SessionHandler
from hubbub.transports.sink import WebSocketSink, close_reason
from hubbub.transports.wsconnection import Message, WebSocketConnection
from hubbub.wire import centrifugo


class CentrifugoSink(WebSocketSink):
    """A WebSocket sink that closes with codes the SDKs read right. (A payload with nothing for
    a Centrifugo client, such as hubbub's own refresh asks, converts to no frame at all.)"""

    __slots__ = ()

    def close(self, code: int, reason: str) -> None:
        self._connection.close(centrifugo.close_code(code), close_reason(reason))


class CentrifugoHandler(SessionHandler):
    """Runs a Centrifugo SDK's commands as its Session's; pings it on the keepalive's tick."""

    __slots__ = ()

    async def handle(self, message: Message) -> None:
        session = self.session
        for command in decode_message(session, self._wire, message):
            request = command.request
            if (
                isinstance(request, protocol.UnsubscribeRequest)
                and session.state is SessionState.CONNECTED
                and request.channel not in session.channels
            ):
                try:
                    session.charge_command()
                    session.outbox.push(b'{"id":%d,"unsubscribe":{}}' % command.id)
                except CommandError as error:
                    session.outbox.push(protocol.encode_error(command.id, error))
                continue
            await session.handle(command)

    def keepalive(self) -> None:
        """The server's ping: an empty reply, queued behind what the session already sent."""
        if self.session.state is SessionState.CONNECTED:
            self.session.outbox.push(centrifugo.PING)


class ProtocolRefused:
    """An upgrade whose subprotocol is not spoken at its path (a hubbub protocol at the Centrifugo
    path, or `centrifuge-protobuf` elsewhere): closed with 3501 at once."""

    def __init__(self, connection: WebSocketConnection, admission: Admission, address: str, reason: str) -> None:
        self._admission = admission
        self._address = address
        connection.close(DisconnectCode.BAD_REQUEST, close_reason(reason))

    async def handle(self, message: Message) -> None:
        return

    async def closed(self) -> None:
        self._admission.release(self._address)
