"""A raw graphql-transport-ws client for protocol tests (websockets' client underneath)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hubbub.server import Server

SUBPROTOCOL = "graphql-transport-ws"


def graphql_url(server: Server | int, path: str = "/graphql") -> str:
    """The GraphQL URL of an in-process server, or of a server process by its port."""
    port = server if isinstance(server, int) else server.port
    return f"ws://127.0.0.1:{port}{path}"


class GqlWire:
    """Sends protocol messages as JSON; reads them back with a timeout; reports the close code."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, server: Server | int, *, init: bool = True, payload: dict[str, Any] | None = None, path: str = "/graphql"
    ) -> GqlWire:
        ws = await connect(graphql_url(server, path), subprotocols=[SUBPROTOCOL], open_timeout=5)  # type: ignore[list-item]
        wire = cls(ws)
        if init:
            await wire.send({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
            ack = await wire.recv()
            assert ack["type"] == "connection_ack", ack
        return wire

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message that is not a server ping (those are answered, as clients do)."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message.get("type") != "ping":
                return dict(message)
            await self.send({"type": "pong"})

    async def subscribe(self, operation_id: str, query: str, **payload: Any) -> None:
        await self.send({"id": operation_id, "type": "subscribe", "payload": {"query": query, **payload}})

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; its close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()
