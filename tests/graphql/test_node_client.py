"""graphql-ws (npm) in Node.js, unchanged: subscriptions, queries, mutations, refusal, recovery
after a restart with hubbub's extension, and in-band refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hubbub.core.auth import mint_token
from hubbub.server import Server
from tests.graphql.conftest import RestartableNode, subscribers
from tests.graphql.js import NodeClient, next_of
from tests.graphql.wire import graphql_url
from tests.helpers import OTHER_SECRET, SECRET

StartNode = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
async def node_client() -> AsyncIterator[StartNode]:
    clients: list[NodeClient] = []

    async def start(url: str, token: str | None = None) -> NodeClient:
        client = await NodeClient.start(url, token)
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.stop()


async def test_subscribe_query_mutate_and_refuse(graphql_server: Server, node_client: StartNode) -> None:
    client = await node_client(graphql_url(graphql_server), mint_token(SECRET, "nina"))
    connected = await client.event(lambda e: e.get("event") == "connected")
    assert connected["payload"]["client"]
    await client.send(op="subscribe", id="me", query="{ me }")
    assert (await client.event(next_of("me")))["next"] == {"data": {"me": "nina"}}
    await client.event(lambda e: e.get("id") == "me" and e.get("complete"))
    await client.send(op="subscribe", id="t", query='subscription { ticker(symbol: "NODE") { price } }')
    await subscribers(graphql_server, "ticker:NODE", 1)
    await client.send(op="subscribe", id="m", query='mutation { tick(symbol: "NODE", price: 8.5) }')
    assert (await client.event(next_of("m")))["next"] == {"data": {"tick": 1}}
    tick = await client.event(next_of("t"))
    assert tick["next"]["data"] == {"ticker": {"price": 8.5}}
    assert tick["next"]["extensions"]["hubbub"]["offset"] == 1
    await client.send(op="subscribe", id="s", query='subscription { secret(name: "x") }')
    refused = await client.event(lambda e: e.get("id") == "s" and "error" in e)
    assert refused["error"]["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"


async def test_a_refused_token_closes_4403(graphql_server: Server, node_client: StartNode) -> None:
    client = await node_client(graphql_url(graphql_server), mint_token(OTHER_SECRET, "mallory"))
    await client.send(op="subscribe", id="me", query="{ me }")
    closed = await client.event(lambda e: e.get("event") == "closed")
    assert closed["code"] == 4403 and closed["reason"].startswith("Forbidden")


async def test_in_band_refresh(graphql_server: Server, node_client: StartNode) -> None:
    client = await node_client(graphql_url(graphql_server), mint_token(SECRET, "nina", ttl=60))
    await client.event(lambda e: e.get("event") == "connected")
    await client.send(op="refresh", token=mint_token(SECRET, "nina", ttl=7200))
    pong = await client.event(lambda e: e.get("event") == "pong")
    assert pong["payload"]["expires_at"] > 0


async def test_resubscribes_after_a_restart_and_misses_nothing(
    restartable: RestartableNode, node_client: StartNode
) -> None:
    """graphql-ws reconnects and resubscribes by itself; the payload it resubscribes with carries
    the last position, so what was published while the node was down comes from history."""
    client = await node_client(graphql_url(restartable.node))
    await client.send(op="subscribe", id="t", query=restartable.query)
    await subscribers(restartable.node, restartable.channel, 1)
    await restartable.publish(1.0, 2.0)
    prices = [(await client.event(next_of("t")))["next"]["data"]["ticker"]["price"] for _ in range(2)]
    await restartable.node.close()
    await client.event(lambda e: e.get("event") == "closed")
    await restartable.publish(3.0, 4.0, 5.0)  # while the node is down
    await restartable.restart()
    prices += [(await client.event(next_of("t")))["next"]["data"]["ticker"]["price"] for _ in range(3)]
    await restartable.publish(6.0)
    prices.append((await client.event(next_of("t")))["next"]["data"]["ticker"]["price"])
    assert prices == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
