"""Attacks through GraphQL (/graphql), against a server in its own process: subscribers that
never read while 20 MiB flow. Limits and malformed input: tests/graphql/test_limits.py."""

from __future__ import annotations

import json

import aiohttp

from bench.process import ServerProcess
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import GqlWire
from tests.hostile.conftest import SpawnServer
from tests.hostile.test_memory import flood_past_deaf_subscribers
from tests.wire import BareWebSocket

NEWS = "subscription { news { n pad } }"


async def subscribed_and_deaf(server: ServerProcess) -> BareWebSocket:
    """A GraphQL subscriber that subscribes, then never reads again."""
    client = await BareWebSocket.open(f"ws://127.0.0.1:{server.port}/graphql", subprotocol="graphql-transport-ws")
    await client.send_json({"type": "connection_init"})
    await client.send_json({"id": "1", "type": "subscribe", "payload": {"query": NEWS}})
    await client.send_json({"type": "ping"})
    while True:  # the pong says the subscription is live
        _, payload = await client.read_frame()
        if json.loads(payload).get("type") == "pong":
            return client


async def test_200_graphql_subscribers_that_never_read_keep_memory_bounded(
    spawn_server: SpawnServer, http: aiohttp.ClientSession
) -> None:
    """Each deaf subscriber is cut at its outbox limit (3008), memory stays bounded, and a
    GraphQL subscriber that reads gets every publication, in order."""
    server = await spawn_server("--max-outbox-bytes", "65536", "--graphql-schema", "tests.graphql.schema:schema")
    good = await GqlWire.open(server.port)
    await good.subscribe("good", "subscription { news { n } }")
    await barrier(good)
    deaf = [await subscribed_and_deaf(server) for _ in range(200)]

    async def next_number() -> int:
        return int((await good.recv(timeout=20))["payload"]["data"]["news"]["n"])

    await flood_past_deaf_subscribers(http, server, deaf, next_number)
