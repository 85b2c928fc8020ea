"""GraphQL servers for the tests: the schema in tests/graphql/schema.py on free ports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hubbub.hooks import Hooks
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.schema import NAMESPACES
from tests.helpers import SECRET

SCHEMA = "tests.graphql.schema:schema"


@pytest.fixture
def start_graphql(start_server: StartServer) -> StartServer:
    async def start(*, hooks: Hooks | None = None, **overrides: Any) -> Server:
        values: dict[str, Any] = {"graphql_schema": SCHEMA, "namespaces": NAMESPACES, "token_secret": SECRET}
        values.update(overrides)
        return await start_server(hooks=hooks, **values)

    return start


@pytest.fixture
async def graphql_server(start_graphql: StartServer) -> Server:
    return await start_graphql()


async def subscribers(server: Server, channel: str, count: int, timeout: float = 10.0) -> None:
    """Until `channel` has `count` subscribers on this server (clients we did not write say
    nothing when a subscription is live: the hub's own count does). Bounded."""
    assert server.hub is not None
    hub = server.hub

    async def reached() -> None:
        while hub.subscriber_counts().get(channel, 0) < count:  # noqa: ASYNC110 - the hub has no event for it
            await asyncio.sleep(0.01)  # polling state we own, bounded by the timeout

    await asyncio.wait_for(reached(), timeout)


# The browser tests' Debian chromium (tests/e2e/conftest.py), for graphql-ws's browser bundle.
from tests.e2e.conftest import browser, page  # noqa: E402, F401
