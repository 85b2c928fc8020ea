"""The client protocol through a host server's WebSocket: FastAPI/uvicorn (ASGI) and aiohttp.
Same protocol, limits, hooks and recovery as hubbub's own transport, on the app's one port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubbub import Client, ConnectDecision, ConnectEvent, Hooks, Refuse, Subscription
from tests.helpers import SECRET
from tests.mounts import MOUNTS, mounted


@pytest.mark.parametrize("kind", MOUNTS)
async def test_publish_subscribe_and_recovery_through_the_mount(tmp_path: Path, kind: str) -> None:
    async with mounted(kind, tmp_path) as host:
        assert host.server.port is None  # hubbub's own public port is off: one port
        async with Client(host.url, min_reconnect_delay=0.01) as client, Client(host.url) as other:
            subscription = await client.subscribe("chat:room")
            await other.publish("chat:room", {"n": 1})
            assert (await asyncio.wait_for(anext(subscription), 5)).data == {"n": 1}
            await host.server.disconnect("", reconnect=True)  # every anonymous connection: 3011
            await host.server.publish("chat:room", {"n": 2})
            got = await asyncio.wait_for(anext(subscription), 10)
            assert got.data == {"n": 2} and subscription.recovered is True
            history = await other.history("chat:room")
            assert [p["data"] for p in history["publications"]] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("kind", MOUNTS)
async def test_hooks_and_msgpack_through_the_mount(tmp_path: Path, kind: str) -> None:
    async def connect(event: ConnectEvent) -> ConnectDecision:
        if event.headers.get("cookie") != "session=ok":
            raise Refuse(103, "sign in first")
        assert event.transport == kind
        return ConnectDecision(user="alice", channels=["feed:alerts"])

    async with mounted(kind, tmp_path, hooks=Hooks(connect=connect), token_secret=SECRET) as host:
        import websockets

        async with websockets.connect(host.url, subprotocols=["hubbub.json.v1"]) as ws:  # type: ignore[list-item]
            await ws.send('{"id":1,"connect":{}}')
            assert '"code":103' in str(await ws.recv())
            await ws.wait_closed()
            assert ws.close_code == 3505
        subscribed: asyncio.Queue[Subscription] = asyncio.Queue()
        headers = {"Cookie": "session=ok"}
        async with Client(host.url, encoding="msgpack", headers=headers, on_subscribed=subscribed.put_nowait):
            subscription = await asyncio.wait_for(subscribed.get(), 5)
            await host.server.publish("feed:alerts", {"level": "high"})
            assert (await asyncio.wait_for(anext(subscription), 5)).data == {"level": "high"}


@pytest.mark.parametrize("kind", MOUNTS)
async def test_draining_closes_mounted_clients_with_1001(tmp_path: Path, kind: str) -> None:
    from tests.wire import BareWebSocket

    async with mounted(kind, tmp_path) as host:
        client = await BareWebSocket.open(host.url)
        await client.send_json({"id": 1, "connect": {}})
        await client.read_messages()
        closing = asyncio.create_task(host.server.close())
        assert await asyncio.wait_for(client.close_code(), 10) == 1001
        await closing
        with pytest.raises(ConnectionError, match="503"):  # a drained server takes no new clients
            await BareWebSocket.open(host.url)
        client.close()
