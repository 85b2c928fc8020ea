"""A subscription resumed after its server was killed gets exactly what it missed, in order."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from msgspec import Raw

from bench.process import ServerProcess
from hubbub import protocol
from tests.conftest import StartServer
from tests.graphql.conftest import SCHEMA
from tests.graphql.schema import NAMESPACE_TABLES, NAMESPACES
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import GqlWire
from tests.redis_server import free_port

TOTAL = 200


def node_flags(redis_url: str, port: int) -> list[str]:
    namespaces = json.dumps(NAMESPACE_TABLES)
    return ["--port", str(port), "--broker", redis_url, "--graphql-schema", SCHEMA, "--namespaces", namespaces]


async def reopen(port: int) -> GqlWire:
    """Connect again once the restarted node listens (bounded, as a client's retry would be)."""
    async with asyncio.timeout(20):
        while True:
            try:
                return await GqlWire.open(port)
            except OSError:
                await asyncio.sleep(0.05)  # retrying a process we started until it listens


async def test_a_resumed_subscription_misses_nothing_across_a_killed_server(
    redis_url: str, start_server: StartServer
) -> None:
    symbol = uuid.uuid4().hex[:8]
    query = f'subscription {{ ticker(symbol: "{symbol}") {{ price }} }}'
    publisher = await start_server(
        broker=redis_url, namespaces=__import__("tests.graphql.schema").graphql.schema.NAMESPACES
    )
    port = free_port()
    received: list[float] = []
    position: dict[str, Any] = {}

    async def read(wire: GqlWire, until: int) -> None:
        while len(received) < until:
            message = await wire.recv(timeout=20)
            assert message["type"] == "next", message
            received.append(message["payload"]["data"]["ticker"]["price"])
            position.update(message["payload"]["extensions"]["hubbub"])

    async def publish_all() -> None:
        for n in range(1, TOTAL + 1):
            await publisher.publish(f"ticker:{symbol}", {"symbol": symbol, "price": float(n)})
            await asyncio.sleep(0.005)  # a steady feed, not synchronisation

    async with ServerProcess.start(None, *node_flags(redis_url, port)) as node:
        wire = await GqlWire.open(port)
        await wire.subscribe("t", query)
        await barrier(wire)
        feed = asyncio.create_task(publish_all())
        await read(wire, 20)
        node.process.kill()  # SIGKILL mid-stream: no drain, no goodbye
        await node.process.wait()
    async with ServerProcess.start(None, *node_flags(redis_url, port)):
        wire = await reopen(port)
        since = {"offset": position["offset"], "epoch": position["epoch"]}
        await wire.subscribe("t", query, extensions={"hubbub": since})
        await feed
        await read(wire, TOTAL)
    assert received == [float(n) for n in range(1, TOTAL + 1)]  # each once, in order


async def test_a_position_history_cannot_fill_is_an_error_the_app_can_act_on(start_server: StartServer) -> None:
    server = await start_server(graphql_schema=SCHEMA, namespaces=NAMESPACES)
    await server.publish("ticker:X", {"symbol": "X", "price": 1.0})
    wire = await GqlWire.open(server)
    query = 'subscription { ticker(symbol: "X") { price } }'
    await wire.subscribe("old", query, extensions={"hubbub": {"offset": 0, "epoch": "gone"}})
    error = await wire.recv()
    assert error["type"] == "error" and error["id"] == "old"
    extensions = error["payload"][0]["extensions"]
    assert extensions["code"] == "UNRECOVERABLE_POSITION"
    assert extensions["hubbub"]["offset"] == 1 and extensions["hubbub"]["epoch"] != "gone"
    # and a fresh subscribe from where the stream stands now works
    await wire.subscribe("new", query, extensions={"hubbub": extensions["hubbub"]})
    await barrier(wire)
    await server.publish("ticker:X", {"symbol": "X", "price": 2.0})
    message = await wire.recv()
    assert message["id"] == "new" and message["payload"]["data"] == {"ticker": {"price": 2.0}}


async def test_a_second_operation_on_a_followed_channel_recovers_on_its_own(start_server: StartServer) -> None:
    server = await start_server(graphql_schema=SCHEMA, namespaces=NAMESPACES)
    for n in range(1, 6):
        await server.publish("ticker:Y", {"symbol": "Y", "price": float(n)})
    wire = await GqlWire.open(server)
    await wire.subscribe("live", 'subscription { ticker(symbol: "Y") { price } }')
    await barrier(wire)
    epoch = (await server.history("ticker:Y")).epoch
    await wire.subscribe(
        "resumed",
        'subscription { ticker(symbol: "Y") { symbol price } }',
        extensions={"hubbub": {"offset": 2, "epoch": epoch}},
    )
    await server.publish("ticker:Y", {"symbol": "Y", "price": 6.0})
    seen: dict[str, list[float]] = {"live": [], "resumed": []}
    while len(seen["resumed"]) < 4 or len(seen["live"]) < 1:
        message = await wire.recv()
        seen[message["id"]].append(message["payload"]["data"]["ticker"]["price"])
    assert seen == {"live": [6.0], "resumed": [3.0, 4.0, 5.0, 6.0]}


async def test_a_second_operation_positioned_between_a_publishers_two_steps_gets_that_publication_once(
    redis_url: str, start_server: StartServer
) -> None:
    """The connection follows the channel already; a second operation's position comes from a
    history read that lands after a publisher's append and before its broadcast: the live copy
    reaches the first operation and not, a second time, the second."""
    prefix = f"test-{uuid.uuid4().hex}"
    node = await start_server(broker=redis_url, redis_prefix=prefix, graphql_schema=SCHEMA, namespaces=NAMESPACES)
    publisher = await start_server(broker=redis_url, redis_prefix=prefix, namespaces=NAMESPACES)
    hub = publisher.hub
    assert hub is not None
    symbol = uuid.uuid4().hex[:8]
    channel = f"ticker:{symbol}"
    query = f'subscription {{ ticker(symbol: "{symbol}") {{ price }} }}'
    first = await publisher.publish(channel, {"symbol": symbol, "price": 1.0})
    wire = await GqlWire.open(node)
    await wire.subscribe("a", query)
    await barrier(wire)
    data = json.dumps({"symbol": symbol, "price": 2.0}).encode()
    options = hub.namespace(channel)
    await hub.history_store.append(channel, data, None, size=options.history_size, ttl=options.history_ttl)
    await wire.subscribe("b", query, extensions={"hubbub": {"offset": first.offset, "epoch": first.epoch}})
    prices: dict[str, list[float]] = {"a": [], "b": []}

    async def read_until(wanted: dict[str, int]) -> None:
        while any(len(prices[op]) < count for op, count in wanted.items()):
            message = await wire.recv(timeout=10)
            assert message["type"] == "next", message
            prices[message["id"]].append(message["payload"]["data"]["ticker"]["price"])

    await read_until({"b": 1})  # recovered from history
    late = protocol.encode_publication_push(channel, protocol.Publication(data=Raw(data), offset=2))
    await hub.broker.publish(channel, 2, late)  # the publisher's second step
    await publisher.publish(channel, {"symbol": symbol, "price": 3.0})
    await read_until({"a": 2, "b": 2})
    assert prices == {"a": [2.0, 3.0], "b": [2.0, 3.0]}
