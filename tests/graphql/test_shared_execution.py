"""An event is executed once per group of subscribers that would get the same result, and one
user's personal data never reaches another."""

from __future__ import annotations

import asyncio

from hubbub.core.auth import mint_token
from hubbub.graphql.documents import DocumentCache, DocumentRefused, Limits
from hubbub.server import Server
from tests.graphql import schema as test_schema
from tests.graphql.conftest import subscribers
from tests.graphql.test_protocol import barrier
from tests.graphql.wire import GqlWire
from tests.helpers import SECRET

TICKER = 'subscription { ticker(symbol: "ACME") { symbol price } }'


async def open_many(server: Server, count: int, query: str, user: str | None = None) -> list[GqlWire]:
    payload = {"token": mint_token(SECRET, user)} if user else None
    wires = await asyncio.gather(*(GqlWire.open(server, payload=payload) for _ in range(count)))
    for n, wire in enumerate(wires):
        await wire.subscribe(f"op-{n}", query)
    for wire in wires:
        await barrier(wire)
    return list(wires)


async def test_one_execution_per_publication_for_every_subscriber_of_a_document(graphql_server: Server) -> None:
    wires = await open_many(graphql_server, 50, TICKER)
    await subscribers(graphql_server, "ticker:ACME", 50)
    test_schema.EXECUTIONS["ticker"] = 0
    for price in (1.0, 2.0, 3.0):
        await graphql_server.publish("ticker:ACME", {"symbol": "ACME", "price": price})
    for n, wire in enumerate(wires):
        prices = [(await wire.recv()) for _ in range(3)]
        assert [m["id"] for m in prices] == [f"op-{n}"] * 3  # each its own id spliced in
        assert [m["payload"]["data"]["ticker"]["price"] for m in prices] == [1.0, 2.0, 3.0]
    assert test_schema.EXECUTIONS["ticker"] == 3  # not 150


async def test_documents_that_differ_execute_apart(graphql_server: Server) -> None:
    short = await open_many(graphql_server, 5, 'subscription { ticker(symbol: "ACME") { price } }')
    full = await open_many(graphql_server, 5, TICKER)
    await subscribers(graphql_server, "ticker:ACME", 10)
    test_schema.EXECUTIONS["ticker"] = 0
    await graphql_server.publish("ticker:ACME", {"symbol": "ACME", "price": 7.0})
    for wire in short:
        assert (await wire.recv())["payload"]["data"] == {"ticker": {"price": 7.0}}
    for wire in full:
        assert (await wire.recv())["payload"]["data"] == {"ticker": {"symbol": "ACME", "price": 7.0}}
    assert test_schema.EXECUTIONS["ticker"] == 2


async def test_a_shared_execution_sees_no_user(graphql_server: Server) -> None:
    alice = await open_many(graphql_server, 1, 'subscription { tickerSeenBy(symbol: "ACME") }', "alice")
    bob = await open_many(graphql_server, 1, 'subscription { tickerSeenBy(symbol: "ACME") }', "bob")
    await graphql_server.publish("ticker:ACME", {"symbol": "ACME", "price": 1.0})
    for wire in alice + bob:
        assert (await wire.recv())["payload"]["data"] == {"tickerSeenBy": "None"}


async def test_personal_fields_execute_per_user_and_never_cross(graphql_server: Server) -> None:
    query = "subscription { inbox { text mine } }"
    alices = await open_many(graphql_server, 3, query, "alice")
    bobs = await open_many(graphql_server, 3, query, "bob")
    await subscribers(graphql_server, "notes:all", 6)
    await graphql_server.publish("notes:all", {"text": "for alice", "to": "alice"})
    await graphql_server.publish("notes:all", {"text": "for bob", "to": "bob"})
    for wire in alices:
        got = [(await wire.recv())["payload"]["data"]["inbox"] for _ in range(2)]
        assert got == [{"text": "for alice", "mine": "for alice"}, {"text": "for bob", "mine": None}]
    for wire in bobs:
        got = [(await wire.recv())["payload"]["data"]["inbox"] for _ in range(2)]
        assert got == [{"text": "for alice", "mine": None}, {"text": "for bob", "mine": "for bob"}]


async def test_async_resolvers_are_shared_and_keep_order(graphql_server: Server) -> None:
    query = 'subscription { slowTicker(symbol: "ACME") { price } }'
    wires = await open_many(graphql_server, 20, query)
    await subscribers(graphql_server, "ticker:ACME", 20)
    test_schema.EXECUTIONS["slow"] = 0
    prices = [float(n) for n in range(10)]
    assert graphql_server.hub is not None
    await graphql_server.batch([("ticker:ACME", {"symbol": "ACME", "price": p}) for p in prices])
    for wire in wires:
        got = [(await wire.recv())["payload"]["data"]["slowTicker"]["price"] for _ in prices]
        assert got == prices
    assert test_schema.EXECUTIONS["slow"] == len(prices)


def test_the_document_cache_validates_a_text_once_and_stays_bounded() -> None:
    limits = Limits(max_document_bytes=1000, max_depth=5, max_aliases=2, max_complexity=50)
    cache = DocumentCache(test_schema.schema, limits, size=2)
    first = cache.get("{ hello }")
    assert cache.get("{ hello }") is first
    cache.get("{ me }")
    cache.get("{ hello me }")  # a third text: the least recently used goes
    assert len(cache._entries) == 2
    assert cache.get("{ hello }") is not first
    refused = [cache.get, cache.get]
    for get in refused:  # a refusal is cached as well, and raised each time
        try:
            get("{ nope }")
        except DocumentRefused as error:
            assert error.code == "GRAPHQL_VALIDATION_FAILED"
        else:
            raise AssertionError("a bad document was accepted")


def test_a_publication_in_two_payloads_shares_its_results() -> None:
    """A reader that fell behind gets batches joined into a payload of its own: the publications
    in it keep the results executed for the readers that kept up."""
    from hubbub.transports.graphql_events import EventCache, Publication

    line = b'{"push":{"channel":"ticker:A","pub":{"data":{"price":1},"offset":7,"time":1700000000000}}}'
    other = b'{"push":{"channel":"ticker:A","pub":{"data":{"price":2},"offset":8,"time":1700000000001}}}'
    cache = EventCache()
    (alone,) = cache.events_for(bytes(line))
    first, second = cache.events_for(line + b"\n" + other)
    assert isinstance(alone, Publication) and isinstance(first, Publication) and isinstance(second, Publication)
    assert first.results is alone.results and second.results is not alone.results
    (reset,) = cache.events_for(line.replace(b"1700000000000", b"1800000000000"))  # same offset, new time
    assert isinstance(reset, Publication) and reset.results is not alone.results


async def test_clients_recovering_the_same_publications_share_their_executions(graphql_server: Server) -> None:
    """A reconnect storm after a restart: every client recovers the same missed publications,
    and each is executed once for all of them, not once per client."""
    for price in (1.0, 2.0, 3.0, 4.0, 5.0):
        await graphql_server.publish("ticker:ACME", {"symbol": "ACME", "price": price})
    epoch = (await graphql_server.history("ticker:ACME")).epoch
    test_schema.EXECUTIONS["ticker"] = 0
    wires = await asyncio.gather(*(GqlWire.open(graphql_server) for _ in range(20)))
    for wire in wires:
        await wire.subscribe("r", TICKER, extensions={"hubbub": {"offset": 0, "epoch": epoch}})
    for wire in wires:
        got = [(await wire.recv())["payload"]["data"]["ticker"]["price"] for _ in range(5)]
        assert got == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert test_schema.EXECUTIONS["ticker"] == 5  # not 100
