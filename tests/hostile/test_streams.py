"""Attacks through the HTTP transports (SSE, HTTP streaming), against a server in its own
process: readers that never read, idle crowds, trickled and oversized requests."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from tests.conftest import OpenRaw
from tests.hostile.conftest import SpawnServer
from tests.hostile.test_memory import MIB, broadcast, expect_numbers
from tests.streams import raw_stream


async def test_300_sse_readers_that_never_read_keep_memory_bounded(
    spawn_server: SpawnServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """While 20 MiB of publications flow, each never-reading SSE stream is cut at its outbox
    limit (3008): memory stays bounded and a reading WebSocket subscriber gets everything."""
    server = await spawn_server("--max-outbox-bytes", "65536", "--close-timeout", "1")
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    idle = [(await raw_stream(server.port, "/connection/sse?channel=news"))[0] for _ in range(300)]
    before = server.memory_kib()
    for round_start in range(0, 2000, 200):  # 2000 x 10 KiB
        await broadcast(http, server, 200, 10_000, round_start)
        await expect_numbers(good, round_start, 200)
    growth = server.memory_kib("VmHWM") - before
    assert growth < 100 * MIB, f"server grew by {growth} KiB"  # unbounded: 300 x 20 MiB
    async with asyncio.timeout(30):
        while True:  # each is cut, then dropped after close_timeout: the node holds none of them
            async with http.get(f"{server.api_url}/api/info") as response:
                if (await response.json())["connections"] == 1:
                    break
            await asyncio.sleep(0.1)  # polling the server's own count
    for sock in idle:
        sock.close()


async def test_a_crowd_of_idle_http_streams_and_trickled_heads_are_bounded(
    spawn_server: SpawnServer, http: aiohttp.ClientSession
) -> None:
    """500 HTTP streams that never connect are closed at connect_timeout (3502); requests whose
    head or body trickles in are dropped at handshake_timeout; neither holds the node."""
    server = await spawn_server("--connect-timeout", "1", "--handshake-timeout", "1")
    streams = [(await raw_stream(server.port, "/connection/stream", "POST"))[0] for _ in range(500)]
    trickled = []
    loop = asyncio.get_running_loop()
    for head in (b"GET /connection/sse?chan", b"POST /connection/stream/send HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, head)
        trickled.append(sock)
    async with asyncio.timeout(20):
        for sock in [*streams, *trickled]:  # each ends: EOF (or a reset) from the server
            while True:
                try:
                    data = await loop.sock_recv(sock, 65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                assert b"3502" in data or b'"closed"' not in data
    async with http.get(f"{server.api_url}/api/info") as response:
        assert (await response.json())["connections"] == 0
    for sock in [*streams, *trickled]:
        sock.close()


async def test_oversized_and_chunked_posts_are_refused_without_reading_them(
    spawn_server: SpawnServer, http: aiohttp.ClientSession
) -> None:
    server = await spawn_server()
    send = f"http://127.0.0.1:{server.port}/connection/stream/send"
    for head, status in (
        (b"Content-Length: 8388608", b"413"),  # 8 MiB announced: answered from the head alone
        (b"Transfer-Encoding: chunked", b"411"),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /connection/stream/send HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n" + b"x" * 65536)
        assert status in await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    forged = json.dumps({"stream": "A" * 10_000, "seq": 1}) + "\n{}"
    async with http.post(send, data=forged.encode()) as response:
        assert response.status == 400  # an envelope line over 256 bytes
