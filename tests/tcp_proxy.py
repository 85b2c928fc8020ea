"""A TCP proxy on loopback between a node and Redis that can make a pub/sub connection go deaf:
bytes from Redis stop reaching the client while the TCP connection stays up and says nothing,
as after a silent network fault (no RST, no FIN). Everything else is forwarded untouched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Pipe:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    subscriber: bool = False  # the client sent SUBSCRIBE on it
    deaf: bool = False  # what Redis sends is dropped
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class DeafeningProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.pipes: list[Pipe] = []
        self.port = 0
        self.silenced = False  # every pub/sub connection, open now or later, hears nothing
        self.dropped = bytearray()  # what Redis sent that the silenced connections never got
        self._dropping = asyncio.Event()
        self._closing = False
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def deafen_subscribers(self) -> int:
        """From now on the open pub/sub connections hear nothing; returns how many there were."""
        count = 0
        for pipe in self.pipes:
            if pipe.subscriber and not pipe.client.is_closing():
                pipe.deaf = True
                count += 1
        return count

    def silence_subscribers(self) -> None:
        """Until `hear_again`, no pub/sub connection hears anything, including ones opened later."""
        self.silenced = True

    def hear_again(self) -> None:
        """Every pub/sub connection hears Redis again from now on (what was dropped stays lost)."""
        self.silenced = False
        for pipe in self.pipes:
            pipe.deaf = False

    async def wait_dropped(self, needle: bytes, timeout: float = 5) -> None:
        """Until something dropped contains `needle` (what Redis sent is gone for sure)."""
        async with asyncio.timeout(timeout):
            while needle not in self.dropped:
                self._dropping.clear()
                await self._dropping.wait()

    def subscriber_addresses(self) -> list[str]:
        """As Redis sees the open pub/sub connections (`addr` in CLIENT LIST): for CLIENT KILL."""
        found = []
        for pipe in self.pipes:
            if pipe.subscriber and not pipe.server.is_closing():
                host, port = pipe.server.get_extra_info("sockname")[:2]
                found.append(f"{host}:{port}")
        return found

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        if self._closing:  # accepted before close() began, connected after: no pipe is left running
            server_writer.close()
            client_writer.close()
            return
        pipe = Pipe(client_writer, server_writer)
        self.pipes.append(pipe)
        pipe.tasks = [
            asyncio.ensure_future(self._upstream(pipe, client_reader)),
            asyncio.ensure_future(self._downstream(pipe, server_reader)),
        ]

    async def _upstream(self, pipe: Pipe, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if b"SUBSCRIBE" in data.upper():
                    pipe.subscriber = True
                pipe.server.write(data)
        pipe.server.close()

    async def _downstream(self, pipe: Pipe, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not (pipe.deaf or (pipe.subscriber and self.silenced)):
                    pipe.client.write(data)
                else:
                    self.dropped += data
                    self._dropping.set()
        pipe.client.close()  # Redis closed it (CLIENT KILL): the client sees that, deaf or not

    async def close(self) -> None:
        """Stop accepting and end every pipe. A pipe made while this waits (an accept already
        connecting to Redis) is ended too: a pipe left running kept a test waiting forever."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        while pending := [task for pipe in self.pipes for task in pipe.tasks if not task.done()]:
            for pipe in self.pipes:
                pipe.client.close()
                pipe.server.close()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@contextlib.asynccontextmanager
async def deafening_proxy(redis_url: str) -> AsyncIterator[DeafeningProxy]:
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    proxy = DeafeningProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
