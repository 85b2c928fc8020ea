"""Server-side subscriptions: from a token's `channels` claim, the connect hook, the personal
channel option and the server API; the Python client delivers them and recovers them."""

from __future__ import annotations

import asyncio

import aiohttp

from hubbub import Client, ClientPublication, ConnectDecision, ConnectEvent, Hooks, Subscription
from hubbub.config import NamespaceOptions
from hubbub.core.auth import mint_token
from tests.conftest import OpenRaw, StartServer
from tests.helpers import NAMESPACES, SECRET


def token_with_channels(user: str, channels: list[str]) -> str:
    import jwt

    return jwt.encode({"sub": user, "channels": channels}, SECRET, algorithm="HS256")


async def test_a_token_channels_claim_subscribes_without_permission_checks(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = await start_server(token_secret=SECRET)
    client = await open_raw(server, connect=False)
    # `feed` admits no anonymous client and nobody publishes to it: the server decided, not the client.
    result = await client.ok("connect", {"token": token_with_channels("alice", ["feed:orders", "chat:room"])})
    assert result["subs"] == ["feed:orders", "chat:room"]
    pushes = [await client.next_message() for _ in range(2)]
    assert {p["push"]["channel"] for p in pushes} == {"feed:orders", "chat:room"}
    positions = {p["push"]["channel"]: p["push"]["subscribe"] for p in pushes}
    assert "epoch" in positions["chat:room"] and positions["chat:room"]["recoverable"] is True
    await server.publish("feed:orders", {"order": 1})
    assert (await client.next_publication())["data"] == {"order": 1}
    refused = await client.call("subscribe", {"channel": "feed:orders"})
    assert refused["error"]["code"] == 105  # already subscribed, by the server


async def test_the_personal_channel_option(start_server: StartServer, open_raw: OpenRaw) -> None:
    namespaces = {**NAMESPACES, "user": NamespaceOptions(history_size=10, history_ttl=60, subscribe="owner")}
    server = await start_server(token_secret=SECRET, personal_channel=True, namespaces=namespaces)
    client = await open_raw(server, connect=False)
    assert (await client.ok("connect", {"token": mint_token(SECRET, "bob")}))["subs"] == ["user:bob"]
    await client.next_message()  # the subscribe push
    await server.publish("user:bob", {"note": "for bob"})
    assert (await client.next_publication())["data"] == {"note": "for bob"}


async def test_server_api_subscribes_and_unsubscribes_a_users_connections(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    server = await start_server(token_secret=SECRET)
    token = mint_token(SECRET, "carol")
    phone, laptop = await open_raw(server, connect=False), await open_raw(server, connect=False)
    for connection in (phone, laptop):
        await connection.ok("connect", {"token": token})
    async with http.post(f"{server.api_url}/api/subscribe", json={"user": "carol", "channel": "chat:ops"}) as resp:
        assert await resp.json() == {"connections": 2}
    for connection in (phone, laptop):
        push = (await connection.next_message())["push"]
        assert push["channel"] == "chat:ops" and "subscribe" in push
    await server.publish("chat:ops", "incident")
    assert (await phone.next_publication())["data"] == "incident"
    assert await server.unsubscribe("carol", "chat:ops") == 2  # in-process, same call
    for connection in (phone, laptop):
        message = await connection.next_message()
        while "unsubscribe" not in message["push"]:  # publications, joins and leaves come first
            message = await connection.next_message()
        assert message["push"]["unsubscribe"] == {"code": 0, "reason": "unsubscribed by the server"}
    async with http.post(f"{server.api_url}/api/subscribe", json={"user": "carol", "channel": "nope:x"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == 102


async def test_python_client_recovers_server_side_subscriptions_after_a_reconnect(start_server: StartServer) -> None:
    async def connect(event: ConnectEvent) -> ConnectDecision:
        return ConnectDecision(user="dave", channels=["chat:news"])

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect))
    subscribed: asyncio.Queue[Subscription] = asyncio.Queue()
    client = Client(server.url, on_subscribed=subscribed.put_nowait, min_reconnect_delay=0.01)
    await client.connect()
    try:
        subscription = await asyncio.wait_for(subscribed.get(), 5)
        assert subscription.server_side and subscription.channel == "chat:news"
        await server.publish("chat:news", 1)
        first = await asyncio.wait_for(anext(subscription), 5)
        assert isinstance(first, ClientPublication) and first.data == 1
        await server.disconnect("dave", reconnect=True)
        await server.publish("chat:news", 2)  # while dave is away: recovered after the reconnect
        await server.publish("chat:news", 3)
        got = [(await asyncio.wait_for(anext(subscription), 5)).data for _ in range(2)]
        assert got == [2, 3]
        assert subscription.recovered is True
        assert client.subscription("chat:news") is subscription  # the same object across the reconnect
    finally:
        await client.close()


def test_the_personal_channel_option_needs_the_user_namespace() -> None:
    import pytest

    from hubbub import ConfigError, Settings
    from hubbub.config import check_settings

    with pytest.raises(ConfigError, match="personal_channel"):
        check_settings(Settings(personal_channel=True, namespaces=NAMESPACES))


async def test_python_client_rpc(start_server: StartServer) -> None:
    from hubbub import RpcEvent

    async def rpc(event: RpcEvent) -> object:
        return {"hello": event.data}

    server = await start_server(hooks=Hooks(rpc=rpc))
    async with Client(server.url) as client:
        assert await client.rpc("greet", "world") == {"hello": "world"}
