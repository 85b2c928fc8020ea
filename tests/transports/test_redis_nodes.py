"""Two hubbub nodes sharing one Redis: fan-out, presence and recovery across nodes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from msgspec import Raw

from hubbub import Client, protocol
from hubbub.config import NamespaceOptions
from tests.conftest import OpenRaw, StartServer


@pytest.mark.parametrize("backend", ["redis_url", "redis_cluster_url"])
async def test_publications_presence_and_recovery_cross_nodes(
    start_server: StartServer,
    open_raw: OpenRaw,
    request: pytest.FixtureRequest,
    backend: str,
    http: aiohttp.ClientSession,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    redis_url = request.getfixturevalue(backend)  # one Redis, or a Redis Cluster
    one = await start_server(broker=redis_url, redis_prefix=prefix)
    two = await start_server(broker=redis_url, redis_prefix=prefix)
    alice = await open_raw(one)
    bob = await open_raw(two)
    await alice.ok("subscribe", {"channel": "chat:room"})
    await bob.ok("subscribe", {"channel": "chat:room"})
    # a publication made on either node reaches subscribers on both, with agreed offsets
    async with http.post(f"{two.api_url}/api/publish", json={"channel": "chat:room", "data": "from two"}) as reply:
        assert (await reply.json())["offset"] == 1
    await alice.ok("publish", {"channel": "chat:room", "data": "from one"})
    for client in (alice, bob):
        assert [(await client.next_publication())["data"] for _ in range(2)] == ["from two", "from one"]
    # presence lists the clients of both nodes
    presence = await bob.ok("presence", {"channel": "chat:room"})
    assert len(presence["clients"]) == 2
    # a client that was away recovers from the shared history through the other node
    async with Client(one.url, min_reconnect_delay=0.01) as away:
        subscription = await away.subscribe("news")
        assert two.hub is not None
        await two.hub.publish("news", Raw(b"1"))
        assert (await asyncio.wait_for(anext(subscription), 5)).data == 1
        position = {"offset": subscription.offset, "epoch": subscription.epoch}
    for n in (2, 3):
        await two.hub.publish("news", Raw(b"%d" % n))
    async with Client(two.url) as again:
        resumed = await again.subscribe("news", since=position)
        assert [(await asyncio.wait_for(anext(resumed), 5)).data for _ in range(2)] == [2, 3]
        assert resumed.recovered is True


@pytest.mark.parametrize("recovering", [False, True])
async def test_a_subscriber_positioned_between_a_publishers_two_steps_gets_that_publication_once(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str, recovering: bool
) -> None:
    """A publisher appends to history, then publishes on the broker. A subscriber whose history
    read lands in between (history and pub/sub are separate connections) is positioned past
    that publication, or recovers it from history: its live copy, arriving after the subscribe
    reply, must not reach it a second time. (CI saw a GraphQL subscription resumed after a
    killed server get one publication twice.)"""
    prefix = f"test-{uuid.uuid4().hex}"
    news = NamespaceOptions(history_size=100, history_ttl=3600.0, presence=True, join_leave=True, publish="anyone")
    namespaces = {"default": news}
    node = await start_server(broker=redis_url, redis_prefix=prefix, namespaces=namespaces)
    publisher = await start_server(broker=redis_url, redis_prefix=prefix, namespaces=namespaces)
    hub = publisher.hub
    assert hub is not None
    await hub.publish("news", Raw(b"1"))
    options = hub.namespace("news")
    top = await hub.history_store.append("news", b"2", None, size=options.history_size, ttl=options.history_ttl)
    client = await open_raw(node)
    params: dict[str, Any] = {"channel": "news"}
    if recovering:
        params["since"] = {"offset": 1, "epoch": top.epoch}
    reply = await client.ok("subscribe", params)
    assert reply["offset"] == 2
    if recovering:
        assert [p["data"] for p in reply["publications"]] == [2]
    joining = await open_raw(node)  # a message without an offset meanwhile still arrives
    await joining.ok("subscribe", {"channel": "news"})
    join = await client.next_message()
    assert join["push"]["channel"] == "news" and "join" in join["push"], join
    late = protocol.encode_publication_push("news", protocol.Publication(data=Raw(b"2"), offset=2))
    await hub.broker.publish("news", 2, late)  # the publisher's second step, after the reply
    await hub.publish("news", Raw(b"3"))
    for subscriber in (client, joining):  # both were positioned at 2
        publication = await subscriber.next_publication()
        assert (publication["data"], publication["offset"]) == (3, 3)
