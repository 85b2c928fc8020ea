"""What reaches a channel by any path reaches its GraphQL subscribers; and /graphql over TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import trustme
from websockets.asyncio.client import connect

from hubbub import Client
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import SUBPROTOCOL, GqlWire

QUERY = 'subscription { ticker(symbol: "X") { price } }'


async def test_publications_by_every_path_reach_graphql_subscribers(
    start_graphql: StartServer, http: aiohttp.ClientSession
) -> None:
    server: Server = await start_graphql(token_secret=None)  # development mode: clients may publish
    wire = await GqlWire.open(server)
    await wire.subscribe("t", QUERY)
    await barrier(wire)
    await server.publish("ticker:X", {"symbol": "X", "price": 1.0})  # in-process
    body = {"channel": "ticker:X", "data": {"symbol": "X", "price": 2.0}}
    async with http.post(f"{server.api_url}/api/publish", json=body) as answer:  # the HTTP server API
        assert answer.status == 200, await answer.text()
    async with Client(server.url) as client:  # a client of hubbub's own protocol
        await client.publish("ticker:X", {"symbol": "X", "price": 3.0})
    prices = [(await wire.recv())["payload"]["data"]["ticker"]["price"] for _ in range(3)]
    assert prices == [1.0, 2.0, 3.0]


async def test_graphql_over_tls(start_graphql: StartServer, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    folder = tmp_path
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server = await start_graphql(tls_cert=str(folder / "cert.pem"), tls_key=str(folder / "key.pem"))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    url = f"wss://127.0.0.1:{server.port}/graphql"
    async with connect(url, subprotocols=[SUBPROTOCOL], ssl=context, open_timeout=5) as ws:  # type: ignore[list-item]
        wire = GqlWire(ws)
        await wire.send({"type": "connection_init"})
        assert (await wire.recv())["type"] == "connection_ack"
        await wire.subscribe("q", "{ hello }")
        assert (await wire.recv())["payload"] == {"data": {"hello": "world"}}
