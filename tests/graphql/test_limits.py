"""Every GraphQL limit has a default and a setting, and a violation is an `error` for that
operation (or a close code), never a crash; a good subscriber on the same channel loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time

from websockets.exceptions import ConnectionClosed

from hubbub.core.auth import mint_token
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import GqlWire


async def refused_with(wire: GqlWire, operation_id: str, query: str) -> str:
    await wire.subscribe(operation_id, query)
    message = await wire.recv()
    assert message["type"] == "error" and message["id"] == operation_id, message
    return str(message["payload"][0]["extensions"]["code"])


async def good_subscriber(server: Server) -> GqlWire:
    wire = await GqlWire.open(server)
    await wire.subscribe("good", 'subscription { ticker(symbol: "G") { price } }')
    await barrier(wire)
    return wire


async def test_documents_past_each_limit_are_refused(start_graphql: StartServer) -> None:
    server = await start_graphql(
        graphql_max_document_bytes=2000, graphql_max_depth=4, graphql_max_aliases=3, graphql_max_complexity=50
    )
    good = await good_subscriber(server)
    wire = await GqlWire.open(server)
    assert await refused_with(wire, "big", "{ hello }" + " " * 2000) == "DOCUMENT_TOO_LARGE"
    assert await refused_with(wire, "deep", "{ a { b { c { d { e } } } } }") == "TOO_DEEP"
    aliases = " ".join(f"a{n}: hello" for n in range(4))
    assert await refused_with(wire, "aliases", f"{{ {aliases} }}") == "TOO_MANY_ALIASES"
    # A fragment bomb: 10 fields, each level spreads the one below 10 times: 10^6 fields expanded.
    levels = ["fragment F0 on Query { " + " ".join(["hello"] * 10) + " }"]
    levels += [f"fragment F{n} on Query {{ " + " ".join([f"...F{n - 1}"] * 10) + " }" for n in range(1, 6)]
    started = time.perf_counter()
    assert await refused_with(wire, "bomb", "{ ...F5 } " + " ".join(levels)) == "TOO_COMPLEX"
    assert time.perf_counter() - started < 2  # counting stops at the budget, however large the bomb
    assert await refused_with(wire, "cycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }") in (
        "GRAPHQL_VALIDATION_FAILED",
    )
    await server.publish("ticker:G", {"symbol": "G", "price": 1.0})
    assert (await good.recv())["payload"]["data"] == {"ticker": {"price": 1.0}}


async def test_operations_per_connection_are_bounded(start_graphql: StartServer) -> None:
    server = await start_graphql(graphql_max_operations=3)
    wire = await GqlWire.open(server)
    for n in range(3):
        await wire.subscribe(f"t{n}", f'subscription {{ ticker(symbol: "S{n}") {{ price }} }}')
    await barrier(wire)
    assert await refused_with(wire, "t3", 'subscription { ticker(symbol: "S3") { price } }') == "TOO_MANY_OPERATIONS"
    await wire.send({"id": "t0", "type": "complete"})
    await wire.subscribe("t3", 'subscription { ticker(symbol: "S3") { price } }')  # room again
    await barrier(wire)
    await server.publish("ticker:S3", {"symbol": "S3", "price": 3.0})
    assert (await wire.recv())["id"] == "t3"


async def test_a_command_flood_is_refused_then_closed(start_graphql: StartServer) -> None:
    server = await start_graphql(command_rate=5.0, command_burst=5, max_refused_commands=10)
    good = await good_subscriber(server)
    wire = await GqlWire.open(server)
    for n in range(40):
        await wire.subscribe(f"q{n}", "{ hello }")
    codes = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = await wire.recv()
            if message["type"] == "error":
                codes.append(message["payload"][0]["extensions"]["code"])
    assert "TOO_MANY_REQUESTS" in codes
    assert wire.ws.close_code == 3013
    await server.publish("ticker:G", {"symbol": "G", "price": 2.0})
    assert (await good.recv())["payload"]["data"] == {"ticker": {"price": 2.0}}


async def test_oversized_and_deeply_nested_messages_close_the_connection(start_graphql: StartServer) -> None:
    server = await start_graphql(max_message_bytes=65536)
    good = await good_subscriber(server)
    wire = await GqlWire.open(server)
    await wire.ws.send('{"type":"ping","payload":"' + "x" * 70000 + '"}')
    assert await wire.close_code() == 1009
    wire = await GqlWire.open(server)
    nested = '{"type":"subscribe","id":"1","payload":{"query":"{hello}","variables":{"a":' + "[" * 20000
    await wire.ws.send(nested + "]" * 20000 + "}}}")
    assert await wire.close_code() == 4400
    await server.publish("ticker:G", {"symbol": "G", "price": 3.0})
    assert (await good.recv())["payload"]["data"] == {"ticker": {"price": 3.0}}


async def test_every_graphql_limit_has_a_default(graphql_server: Server) -> None:
    settings = graphql_server.settings
    limits = {
        "graphql_init_timeout": 10.0,
        "graphql_max_operations": 100,
        "graphql_max_document_bytes": 16384,
        "graphql_max_depth": 12,
        "graphql_max_aliases": 30,
        "graphql_max_complexity": 1000,
        "graphql_document_cache_size": 1000,
    }
    assert {name: getattr(settings, name) for name in limits} == limits


async def test_a_resolver_that_names_no_channel_in_time_is_an_error(start_graphql: StartServer) -> None:
    server = await start_graphql(graphql_resolve_timeout=0.2)
    wire = await GqlWire.open(server)
    assert await refused_with(wire, "stuck", "subscription { stuck }") == "RESOLVER_TIMEOUT"
    await wire.subscribe("q", "{ hello }")  # and the connection goes on
    assert (await wire.recv())["payload"] == {"data": {"hello": "world"}}


async def test_a_refused_connection_leaves_nothing_behind(graphql_server: Server) -> None:
    """The session's refusal discards its outbox: nothing the connection waits for may keep it."""
    from tests.helpers import OTHER_SECRET

    assert graphql_server._endpoint is not None and graphql_server._endpoint.server is not None
    listening = graphql_server._endpoint.server
    for _ in range(5):
        wire = await GqlWire.open(graphql_server, init=False)
        await wire.send({"type": "connection_init", "payload": {"token": mint_token(OTHER_SECRET, "x")}})
        assert await wire.close_code() == 4403
    async with asyncio.timeout(10):
        while listening.connections:  # noqa: ASYNC110 - the registry has no event for it
            await asyncio.sleep(0.01)  # polling the server's own registry, bounded
