"""Readers for the HTTP transports (SSE, HTTP streaming), over aiohttp: real sockets, our parsing
of the wire format kept to what the specs say (the browser's EventSource is tested in e2e/)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class SseEvent:
    event: str  # "message" when the stream named none (the EventSource default)
    data: str
    id: str | None  # the `id:` of this event, if it had one

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    """Parses a text/event-stream as the HTML standard says (fields, blank line dispatches)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments = 0

    async def next_event(self, timeout: float = 5.0) -> SseEvent:
        event, event_id = "", None
        data: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data or event:
                        if event_id is not None:
                            self.last_event_id = event_id
                        return SseEvent(event or "message", "\n".join(data), event_id)
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id":
                    event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)

    async def next_of(self, kind: str, timeout: float = 5.0) -> SseEvent:
        """The next event of this type, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event(timeout)
                if event.event == kind:
                    return event

    async def publications(self, count: int, timeout: float = 5.0) -> list[Any]:
        """The data of the next `count` publication events."""
        found: list[Any] = []
        while len(found) < count:
            event = await self.next_of("message", timeout)
            found.append(event.json)
        return found


class StreamReader:
    """The HTTP-streaming response: its id first, then one JSON message per line."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.stream_id = ""

    async def open(self) -> StreamReader:
        first = await self.next_message()
        self.stream_id = first["stream"]["id"]
        return self

    async def next_message(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                if raw.strip():
                    message: dict[str, Any] = json.loads(raw)
                    return message

    async def reply(self, command_id: int, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next_message(timeout)
                if message.get("id") == command_id:
                    return message


async def raw_stream(port: int, path: str, method: str = "GET") -> tuple[socket.socket, bytes]:
    """A stream opened by hand through a 4 KiB receive buffer, read only when the test reads it
    (a reader that stops): the socket, and what came until the stream had started."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        head = b""
        async with asyncio.timeout(10):
            while b"200 OK" not in head or (b"event: subscribed" not in head and b'{"stream"' not in head):
                head += await loop.sock_recv(sock, 4096)
    except BaseException:
        sock.close()
        raise
    return sock, head
