"""`gql` (PyPI), a GraphQL client we did not write, unchanged: subscriptions, queries,
mutations, refusal, recovery after a restart with hubbub's extension, and refresh."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportClosed, TransportConnectionFailed, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

from hubbub.core.auth import mint_token
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.conftest import SCHEMA, subscribers
from tests.graphql.schema import NAMESPACES
from tests.graphql.wire import graphql_url
from tests.helpers import OTHER_SECRET, SECRET

TICKER = gql("subscription Ticker($symbol: String!) { ticker(symbol: $symbol) { symbol price } }")


def transport(server: Server | int, token: str | None = None) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=graphql_url(server),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"token": token} if token else {},
        close_timeout=1,
    )


@contextlib.asynccontextmanager
async def session_on(server: Server | int, token: str | None = None) -> AsyncIterator[Any]:
    async with Client(transport=transport(server, token), fetch_schema_from_transport=False) as session:
        yield session


async def test_subscribe_query_and_mutate_with_gql(graphql_server: Server) -> None:
    async with session_on(graphql_server, mint_token(SECRET, "dora")) as session:
        assert await session.execute(gql("{ hello me }")) == {"hello": "world", "me": "dora"}
        stream = session.subscribe(GraphQLRequest(TICKER, variable_values={"symbol": "GQL"}))
        first = asyncio.ensure_future(anext(stream))
        await subscribers(graphql_server, "ticker:GQL", 1)
        result = await session.execute(gql('mutation { tick(symbol: "GQL", price: 4.25) }'))
        assert result == {"tick": 1}
        assert await asyncio.wait_for(first, 5) == {"ticker": {"symbol": "GQL", "price": 4.25}}
        await graphql_server.publish("ticker:GQL", {"symbol": "GQL", "price": 5.0})
        assert await asyncio.wait_for(anext(stream), 5) == {"ticker": {"symbol": "GQL", "price": 5.0}}
        await stream.aclose()
        with pytest.raises(TransportQueryError):  # an operation's error reaches the app as an error
            await session.execute(gql('subscription { secret(name: "x") }'))


async def test_a_refused_token_is_refused_to_gql(graphql_server: Server) -> None:
    with pytest.raises(TransportConnectionFailed) as refused:
        async with session_on(graphql_server, mint_token(OTHER_SECRET, "mallory")):
            pass
    closed = refused.value.__cause__
    assert isinstance(closed, ConnectionClosed) and closed.rcvd is not None
    assert closed.rcvd.code == 4403 and closed.rcvd.reason.startswith("Forbidden")


async def test_gql_resumes_after_a_restart_with_the_hubbub_extension(start_server: StartServer, tmp_path: Any) -> None:
    settings = {"graphql_schema": SCHEMA, "namespaces": NAMESPACES, "history_path": str(tmp_path / "h.db")}
    server = await start_server(**settings)
    port, api_port = server.port, server.api_port
    position: dict[str, Any] = {}
    got: list[float] = []
    async with session_on(server) as session:
        stream = session.subscribe(GraphQLRequest(TICKER, variable_values={"symbol": "R"}), get_execution_result=True)
        first = asyncio.ensure_future(anext(stream))
        await subscribers(server, "ticker:R", 1)
        await server.publish("ticker:R", {"symbol": "R", "price": 1.0})
        result = await asyncio.wait_for(first, 5)
        got.append(result.data["ticker"]["price"])
        position = result.extensions["hubbub"]
        await server.close()  # a restart (drained: SQLite history kept, same epoch)
        with pytest.raises((TransportClosed, TransportConnectionFailed)):  # gql sees it go
            await asyncio.wait_for(anext(stream), 5)
    restarted = await start_server(**settings, port=port, api_port=api_port)
    for price in (2.0, 3.0, 4.0):  # published while the client was away
        await restarted.publish("ticker:R", {"symbol": "R", "price": price})
    async with session_on(restarted) as session:
        since = {"hubbub": {"offset": position["offset"], "epoch": position["epoch"]}}
        request = GraphQLRequest(TICKER, variable_values={"symbol": "R"}, extensions=since)
        stream = session.subscribe(request, get_execution_result=True)
        for _ in range(3):
            got.append((await asyncio.wait_for(anext(stream), 5)).data["ticker"]["price"])
    assert got == [1.0, 2.0, 3.0, 4.0]


async def test_gql_refreshes_in_band_with_a_ping(graphql_server: Server) -> None:
    gql_transport = transport(graphql_server, mint_token(SECRET, "erin", ttl=60))
    async with Client(transport=gql_transport, fetch_schema_from_transport=False) as session:
        await gql_transport.send_ping({"token": mint_token(SECRET, "erin", ttl=7200)})
        await asyncio.wait_for(gql_transport.pong_received.wait(), 5)
        assert gql_transport.payloads["pong"]["expires_at"] > time.time() + 7000
        assert await session.execute(gql("{ me }")) == {"me": "erin"}
