"""GraphQL servers for the tests: the schema in tests/graphql/schema.py on free ports."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
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


@dataclass
class RestartableNode:
    """A GraphQL node over the test's Redis, a publisher node beside it, and one channel of its
    own: clients of `node` resume after `restart()` from what `publisher` put in history."""

    publisher: Server
    node: Server
    symbol: str
    settings: dict[str, Any]
    start: StartServer

    @property
    def channel(self) -> str:
        return f"ticker:{self.symbol}"

    @property
    def query(self) -> str:
        return f'subscription {{ ticker(symbol: "{self.symbol}") {{ price }} }}'

    async def publish(self, *prices: float) -> None:
        for price in prices:
            await self.publisher.publish(self.channel, {"symbol": self.symbol, "price": price})

    async def restart(self) -> None:
        """Start the node again on the same ports (after the caller closed it)."""
        self.node = await self.start(**self.settings, port=self.node.port, api_port=self.node.api_port)


@pytest.fixture
async def restartable(redis_url: str, start_server: StartServer) -> RestartableNode:
    settings: dict[str, Any] = {"broker": redis_url, "graphql_schema": SCHEMA, "namespaces": NAMESPACES}
    publisher = await start_server(broker=redis_url, namespaces=NAMESPACES)
    node = await start_server(**settings)
    return RestartableNode(publisher, node, uuid.uuid4().hex[:8], settings, start_server)
