"""Attacks on memory, against a server in its own process: its RSS is read from /proc.

Each test also checks that a well-behaved subscriber receives every publication meanwhile.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable

import aiohttp

from bench.process import ServerProcess
from tests.conftest import OpenRaw, RawClient
from tests.hostile.conftest import SpawnServer
from tests.wire import BareWebSocket, client_frame

MIB = 1024


async def broadcast(http: aiohttp.ClientSession, server: ServerProcess, count: int, size: int, first: int) -> None:
    """Publish `count` publications of about `size` bytes to `news`, numbered from `first`."""
    for start in range(first, first + count, 100):
        batch = min(100, first + count - start)
        for offset in range(batch):
            body = {"channel": "news", "data": {"n": start + offset, "pad": "x" * size}}
            async with http.post(f"{server.api_url}/api/publish", json=body) as response:
                assert response.status == 200, await response.text()


async def flood_past_deaf_subscribers(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    deaf: list[BareWebSocket],
    next_number: Callable[[], Awaitable[int]],
) -> None:
    """2000 publications of 10 KiB to `news` past subscribers that never read: the one that reads
    (its next publication's number from `next_number`) gets every one, in order; each deaf one is
    cut with 3008 at its outbox limit; the server's memory stays bounded."""
    before = server.memory_kib()
    for round_start in range(0, 2000, 200):
        await broadcast(http, server, 200, 10_000, round_start)
        for expected in range(round_start, round_start + 200):
            assert await next_number() == expected
    growth = server.memory_kib("VmHWM") - before
    assert growth < 100 * MIB, f"server grew by {growth} KiB"  # unbounded: len(deaf) x 20 MiB
    codes = [await asyncio.wait_for(client.close_code(), 20) for client in deaf]
    assert codes == [3008] * len(deaf), codes
    for client in deaf:
        client.close()


async def expect_numbers(client: RawClient, first: int, count: int) -> None:
    for expected in range(first, first + count):
        assert (await client.next_publication(timeout=20))["data"]["n"] == expected


async def subscribed_bare(server: ServerProcess) -> BareWebSocket:
    """A client that subscribes, then never reads again (its stream buffer fills, then the socket)."""
    client = await BareWebSocket.open(server.url)
    await client.send_json({"id": 1, "connect": {}})
    await client.send_json({"id": 2, "subscribe": {"channel": "news"}})
    received: list[dict[str, object]] = []
    while not any(message.get("id") == 2 for message in received):
        received += await client.read_messages()
    return client


async def test_500_clients_that_never_read_keep_memory_bounded(
    spawn_server: SpawnServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """500 subscribers stop reading while 20 MiB of publications flow: each is cut at its outbox
    limit (3008), server memory stays bounded, and a reading subscriber gets everything."""
    server = await spawn_server("--max-outbox-bytes", "65536")
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    idle = [await subscribed_bare(server) for _ in range(500)]
    before = server.memory_kib()
    for round_start in range(0, 2000, 200):  # 2000 x 10 KiB, the good client keeping up
        await broadcast(http, server, 200, 10_000, round_start)
        await expect_numbers(good, round_start, 200)
    growth = server.memory_kib("VmHWM") - before
    # Without a bound: 500 x 20 MiB. With it: each at most outbox + one batch + transport buffer.
    assert growth < 120 * MIB, f"server grew by {growth} KiB"
    cut = 0
    for client in idle:
        if await asyncio.wait_for(client.close_code(), 20) == 3008:
            cut += 1
        client.close()
    assert cut == 500


async def test_slow_reader_holds_at_most_the_default_outbox(
    spawn_server: SpawnServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """With the default 1 MiB outbox, a reader that stops costs the server about that much."""
    server = await spawn_server()
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    slow = await subscribed_bare(server)
    before = server.memory_kib()
    for round_start in range(0, 1000, 100):  # 1000 x 20 KiB = 20 MiB offered to the slow reader
        await broadcast(http, server, 100, 20_000, round_start)
        await expect_numbers(good, round_start, 100)
    assert await asyncio.wait_for(slow.close_code(), 20) == 3008
    growth = server.memory_kib("VmHWM") - before
    assert growth < 12 * MIB, f"server grew by {growth} KiB for one slow reader"
    slow.close()


def deflate_bomb(size: int) -> bytes:
    """`size` zero bytes, raw-deflated as permessage-deflate sends them (RFC 7692 section 7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    return data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data


async def _send_bomb(server: ServerProcess, bomb: bytes) -> int | None:
    attacker = await BareWebSocket.open(server.url, extra_headers="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert "permessage-deflate" in attacker.response_head
    await attacker.send_json({"id": 1, "connect": {}})  # uncompressed frames stay legal
    frame = client_frame(bomb)
    await attacker.send_bytes(bytes([frame[0] | 0x40]) + frame[1:])  # RSV1: compressed
    code = await asyncio.wait_for(attacker.close_code(), 20)
    attacker.close()
    return code


async def test_compression_bomb_of_128_mib_grows_memory_by_less_than_64_mib(
    spawn_server: SpawnServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """With compression on, a 128 MiB bomb is closed with 1009. With the default 64 KiB message
    limit the compressed frame itself is too big; with a 1 MiB limit decompression stops there."""
    bomb = deflate_bomb(128 * 1024 * 1024)
    for flags in (["--compression"], ["--compression", "--max-message-bytes", "1048576"]):
        server = await spawn_server(*flags)
        good = await open_raw(server)
        await good.ok("subscribe", {"channel": "news"})
        before = server.memory_kib()
        assert await _send_bomb(server, bomb) == 1009
        growth = server.memory_kib("VmHWM") - before
        assert growth < 64 * MIB, f"{flags}: grew by {growth} KiB"
        await broadcast(http, server, 1, 10, 0)
        await expect_numbers(good, 0, 1)


PING_FLOOD = 400_000  # pings of 125 bytes: 50 MiB of pongs if the server answered them all


async def flood_pings(flooder: BareWebSocket, seconds: float = 5.0) -> int:
    """Send up to PING_FLOOD pings, reading nothing, for at most `seconds`; how many were taken."""
    ping = client_frame(b"p" * 125, opcode=0x9)
    sent = 0
    try:
        async with asyncio.timeout(seconds):
            while sent < PING_FLOOD:
                flooder.writer.write(ping * 1000)
                sent += 1000
                await flooder.writer.drain()  # blocks for good once the server stops reading
    except TimeoutError:
        pass
    return sent


async def test_ping_flood_from_a_client_that_never_reads_is_throttled(
    spawn_server: SpawnServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """Pongs the flooder never reads stop the server from reading it (TCP backpressure), so
    memory stays bounded; other clients are unaffected."""
    server = await spawn_server()
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    flooder = await BareWebSocket.open(server.url)
    before = server.memory_kib()
    sent = await flood_pings(flooder)
    assert sent < PING_FLOOD, "the server read every ping: no backpressure"
    growth = server.memory_kib("VmHWM") - before
    assert growth < 16 * MIB, f"server grew by {growth} KiB under a ping flood"
    await broadcast(http, server, 10, 100, 0)
    await expect_numbers(good, 0, 10)
    flooder.writer.transport.abort()
