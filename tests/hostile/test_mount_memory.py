"""Memory attacks on the mounts, each in its own process (RSS read from /proc): readers that stop,
a ping flood. The host's buffers are part of what a mounted connection costs."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bench.process import ServerProcess
from tests.conftest import OpenRaw
from tests.hostile.test_memory import MIB, PING_FLOOD, broadcast, expect_numbers, flood_pings, subscribed_bare
from tests.mounts import MOUNTS
from tests.wire import BareWebSocket


@pytest.mark.parametrize("kind", MOUNTS)
async def test_200_mounted_clients_that_never_read_keep_memory_bounded(
    open_raw: OpenRaw, http: aiohttp.ClientSession, kind: str
) -> None:
    async with ServerProcess.start_mount(kind, max_outbox_bytes="65536") as server:
        good = await open_raw(server)
        await good.ok("subscribe", {"channel": "news"})
        idle = [await subscribed_bare(server) for _ in range(200)]
        before = server.memory_kib()
        for round_start in range(0, 1000, 200):  # 1000 x 10 KiB offered to each, the good client keeping up
            await broadcast(http, server, 200, 10_000, round_start)
            await expect_numbers(good, round_start, 200)
        growth = server.memory_kib("VmHWM") - before
        # Unbounded: 200 x 10 MiB. Bounded: outbox + the sink's 64 KiB + the host's and kernel buffers.
        assert growth < 120 * MIB, f"{kind}: grew by {growth} KiB"
        codes = [await asyncio.wait_for(client.close_code(), 20) for client in idle]
        for client in idle:
            client.close()
        await good.ws.close()  # before the host stops: uvicorn waits for its open connections
        assert codes.count(3008) == 200


@pytest.mark.parametrize("kind", MOUNTS)
async def test_a_ping_flood_on_a_mount(open_raw: OpenRaw, http: aiohttp.ClientSession, kind: str) -> None:
    """aiohttp stops reading a flooder whose pongs pile up (as hubbub's transport does); uvicorn
    answers every ping and buffers the pongs: its memory grows with the flood (documented)."""
    async with ServerProcess.start_mount(kind) as server:
        good = await open_raw(server)
        await good.ok("subscribe", {"channel": "news"})
        flooder = await BareWebSocket.open(server.url)
        before = server.memory_kib()
        sent = await flood_pings(flooder)
        growth = server.memory_kib("VmHWM") - before
        if kind == "aiohttp":
            assert sent < PING_FLOOD, "aiohttp read every ping: no backpressure"
            assert growth < 32 * MIB, f"{kind}: grew by {growth} KiB under a ping flood"
        else:
            assert sent == PING_FLOOD and growth > 16 * MIB  # uvicorn's: no backpressure on pings
        await broadcast(http, server, 10, 100, 0)
        await expect_numbers(good, 0, 10)  # the good client is served meanwhile, on either host
        flooder.writer.transport.abort()
        await good.ws.close()


async def test_a_compression_bomb_on_the_asgi_mount_stops_at_uvicorns_size_limit(
    open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """uvicorn negotiates permessage-deflate by default and inflates up to its ws_max_size (16 MiB
    unless set), then closes with 1009. (The aiohttp mount never negotiates compression.)"""
    from tests.hostile.test_memory import _send_bomb, deflate_bomb

    async with ServerProcess.start_mount("asgi") as server:
        good = await open_raw(server)
        await good.ok("subscribe", {"channel": "news"})
        before = server.memory_kib()
        assert await _send_bomb(server, deflate_bomb(128 * 1024 * 1024)) == 1009
        growth = server.memory_kib("VmHWM") - before
        assert growth < 64 * MIB, f"grew by {growth} KiB"
        await broadcast(http, server, 1, 10, 0)
        await expect_numbers(good, 0, 1)
        await good.ws.close()
