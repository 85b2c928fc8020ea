"""Strawberry and Ariadne schemas are served as they are (by object and by import path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hubbub.config import Settings
from hubbub.core.auth import mint_token
from hubbub.errors import ConfigError
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.schema import NAMESPACES
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import GqlWire
from tests.helpers import SECRET


@pytest.mark.parametrize("name", ["strawberry_schema", "ariadne_schema"])
async def test_a_ticker_subscription_and_a_query(start_server: StartServer, name: str) -> None:
    server = await start_server(graphql_schema=f"tests.graphql.other_schemas:{name}", namespaces=NAMESPACES)
    wire = await GqlWire.open(server)
    await wire.subscribe("q", "{ hello }")
    assert (await wire.recv())["payload"] == {"data": {"hello": "world"}}
    assert (await wire.recv())["type"] == "complete"
    await wire.subscribe("t", 'subscription { ticker(symbol: "LIB") { symbol price } }')
    await barrier(wire)
    await server.publish("ticker:LIB", {"symbol": "LIB", "price": 12.5})
    message = await wire.recv()
    assert message["payload"]["data"] == {"ticker": {"symbol": "LIB", "price": 12.5}}


async def test_a_schema_object_passed_to_the_server(tmp_path: object) -> None:
    from tests.graphql.other_schemas import strawberry_schema

    settings = Settings(port=0, api_port=0, history_path=None, namespaces=NAMESPACES)
    async with Server(settings, graphql_schema=strawberry_schema) as server:
        wire = await GqlWire.open(server)
        await wire.subscribe("q", "{ hello }")
        assert (await wire.recv())["payload"] == {"data": {"hello": "world"}}
        await wire.close()


async def test_an_sdl_personal_directive_keeps_users_apart(start_server: StartServer) -> None:
    server = await start_server(
        graphql_schema="tests.graphql.other_schemas:ariadne_schema", namespaces=NAMESPACES, token_secret=SECRET
    )
    wires = {}
    for user in ("ann", "ben"):
        wires[user] = await GqlWire.open(server, payload={"token": mint_token(SECRET, user)})
        await wires[user].subscribe("i", "subscription { inbox }")
        await barrier(wires[user])
    await server.publish("notes:all", {"text": "hi ann", "to": "ann"})
    assert (await wires["ann"].recv())["payload"]["data"] == {"inbox": "hi ann"}
    assert (await wires["ben"].recv())["payload"]["data"] == {"inbox": None}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_colon", "is not 'package.module:attribute'"),
        ("no.such.module:schema", "cannot import"),
        ("tests.graphql.schema:nothing", "has no 'nothing'"),
        ("tests.graphql.schema:NAMESPACES", "is not a GraphQL schema"),
    ],
)
async def test_a_bad_schema_setting_is_a_clear_config_error(start_server: StartServer, spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        await start_server(graphql_schema=spec)


def test_without_graphql_core_the_error_says_what_to_install() -> None:
    """hubbub runs without the extra; asking it for a schema then says which extra to install."""
    script = (
        "import sys; sys.modules['graphql'] = None\n"  # as if graphql-core were not installed
        "import hubbub.server\n"
        "from hubbub.graphql.schema import load_schema\n"
        "load_schema('hubbub.graphql.example:schema')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "pip install 'hubbub[graphql]'" in done.stderr, done.stderr
