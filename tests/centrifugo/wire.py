"""A raw client of Centrifugo's protocol, JSON or Protobuf, written from the protocol's own
definitions (not hubbub's code): for what the SDKs do not show (pings, codes, hostile input).
Protobuf messages are built with centrifuge-python's generated module, Centrifugo's own schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aiohttp
from centrifuge.protocol import client_pb2
from google.protobuf.json_format import MessageToDict, ParseDict


class Listening(Protocol):
    """A server in this process (hubbub.server.Server) or in its own (bench.process.ServerProcess)."""

    @property
    def port(self) -> int | None: ...


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def encode_commands(commands: list[dict[str, Any]], protobuf: bool) -> str | bytes:
    if not protobuf:
        return "\n".join(json.dumps(command) for command in commands)
    out = b""
    for command in commands:
        body = ParseDict(command, client_pb2.Command()).SerializeToString()
        out += varint(len(body)) + body
    return out


def decode_replies(data: str | bytes) -> list[dict[str, Any]]:
    if isinstance(data, str):
        return [json.loads(line) for line in data.split("\n")]
    replies, position = [], 0
    while position < len(data):
        length, position = read_varint(data, position)
        reply = client_pb2.Reply()
        reply.ParseFromString(data[position : position + length])
        position += length
        replies.append(MessageToDict(reply, preserving_proto_field_name=True))
    return replies


class CentrifugoWire:
    """One raw Centrifugo connection; replies and pushes as dicts (Protobuf ones through
    MessageToDict: bytes as base64, 64-bit integers as strings)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, protobuf: bool) -> None:
        self.ws = ws
        self.protobuf = protobuf
        self.received: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, server: Listening, *, protobuf: bool, path: str = "/connection/centrifugo"
    ) -> CentrifugoWire:
        protocols = ("centrifuge-protobuf",) if protobuf else ()
        ws = await http.ws_connect(f"ws://127.0.0.1:{server.port}{path}", protocols=protocols)
        return cls(ws, protobuf)

    def data(self, value: Any) -> Any:
        """A data field as this encoding carries JSON: raw JSON, or base64 of its bytes in ParseDict."""
        if not self.protobuf:
            return value
        import base64

        return base64.b64encode(json.dumps(value).encode()).decode()

    async def send(self, *commands: dict[str, Any]) -> None:
        frame = encode_commands(list(commands), self.protobuf)
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def command(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        await self.send({"id": self._next_id, method: params or {}})
        return self._next_id

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.received:
            message = await self.ws.receive(timeout=timeout)
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise ConnectionError(f"expected a data frame, got {message.type!r} {message.data!r}")
            if self.protobuf != (message.type == aiohttp.WSMsgType.BINARY):
                raise AssertionError(f"a frame of the wrong type: {message.type!r}")
            self.received += decode_replies(message.data)
        return self.received.pop(0)

    async def reply(self, command_id: int, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await self.message(timeout)
            if message.get("id") == command_id:
                return message

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.reply(await self.command(method, params))

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes (keeping what came first); its close code."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self.received += decode_replies(message.data)
                elif message.type == aiohttp.WSMsgType.CLOSE:
                    return int(message.data)
                else:
                    return self.ws.close_code
