"""The schema the GraphQL tests serve (graphql-core, built in code): a ticker, a personal
inbox, a refused channel, async resolvers, a query and a mutation that publishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
)

from hubbub.config import NamespaceOptions
from hubbub.graphql import Channel, GraphQLContext, channel

NAMESPACE_TABLES: dict[str, dict[str, Any]] = {  # as a config file or --namespaces would give them
    "default": {"allow_anonymous": True},
    "ticker": {"history_size": 1000, "history_ttl": 3600, "allow_anonymous": True, "publish": "anyone"},
    "notes": {"history_size": 100, "history_ttl": 3600, "allow_anonymous": True},
    "secret": {"subscribe": "token"},
}
NAMESPACES = {name: NamespaceOptions(**table) for name, table in NAMESPACE_TABLES.items()}

EXECUTIONS = {"ticker": 0, "slow": 0}  # how often an event was executed (shared execution tests)

Ticker = GraphQLObjectType(
    "Ticker",
    {
        "symbol": GraphQLField(GraphQLNonNull(GraphQLString)),
        "price": GraphQLField(GraphQLNonNull(GraphQLFloat)),
    },
)

News = GraphQLObjectType("News", {"n": GraphQLField(GraphQLInt), "pad": GraphQLField(GraphQLString)})

Note = GraphQLObjectType(
    "Note",
    {
        "text": GraphQLField(GraphQLString),
        "mine": GraphQLField(GraphQLString, description="the text when addressed to whoever asks, else null"),
    },
)


def follow(name: str) -> Any:
    async def subscribe(_root: Any, _info: Any, **args: Any) -> AsyncIterator[Channel]:
        yield channel(name.format(**args))

    return subscribe


async def never_names_a_channel(_root: Any, _info: Any) -> AsyncIterator[Channel]:
    await asyncio.Event().wait()  # a resolver stuck on something that never comes
    yield channel("never")


async def refuse_to_follow(_root: Any, _info: Any) -> AsyncIterator[Channel]:
    raise ValueError("this feed is closed")
    yield channel("never")  # an async generator that raises before its first item


def resolve_ticker(event: Any, _info: Any, **_: Any) -> Any:
    EXECUTIONS["ticker"] += 1
    return event


def resolve_note(event: Any, info: Any) -> Any:
    context: GraphQLContext = info.context
    return {"text": event["text"], "mine": event["text"] if event.get("to") == context.user else None}


async def resolve_slow(event: Any, _info: Any, **_: Any) -> Any:
    EXECUTIONS["slow"] += 1
    await asyncio.sleep(0)  # an async resolver: its result comes a loop turn later
    return event


def resolve_seen_by(_event: Any, info: Any, **_: Any) -> str:
    context: GraphQLContext = info.context
    return repr(context.user)  # "None" in a shared execution: no user to leak


async def resolve_tick(_root: Any, info: Any, symbol: str, price: float) -> int:
    context: GraphQLContext = info.context
    assert context.publish is not None
    result = await context.publish(f"ticker:{symbol}", {"symbol": symbol, "price": price})
    return int(result.offset)


def resolve_me(_root: Any, info: Any) -> str | None:
    context: GraphQLContext = info.context
    return context.user


schema = GraphQLSchema(
    query=GraphQLObjectType(
        "Query",
        {
            "hello": GraphQLField(GraphQLString, resolve=lambda *_: "world"),
            "me": GraphQLField(GraphQLString, resolve=resolve_me),
        },
    ),
    mutation=GraphQLObjectType(
        "Mutation",
        {
            "tick": GraphQLField(
                GraphQLInt,
                args={
                    "symbol": GraphQLArgument(GraphQLNonNull(GraphQLString)),
                    "price": GraphQLArgument(GraphQLNonNull(GraphQLFloat)),
                },
                resolve=resolve_tick,
            )
        },
    ),
    subscription=GraphQLObjectType(
        "Subscription",
        {
            "ticker": GraphQLField(
                Ticker,
                args={"symbol": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow("ticker:{symbol}"),
                resolve=resolve_ticker,
            ),
            "slowTicker": GraphQLField(
                Ticker,
                args={"symbol": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow("ticker:{symbol}"),
                resolve=resolve_slow,
            ),
            "tickerSeenBy": GraphQLField(
                GraphQLString,
                args={"symbol": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow("ticker:{symbol}"),
                resolve=resolve_seen_by,
            ),
            "inbox": GraphQLField(
                Note, subscribe=follow("notes:all"), resolve=resolve_note, extensions={"personal": True}
            ),
            "news": GraphQLField(News, subscribe=follow("news"), resolve=lambda event, _info: event),
            "stuck": GraphQLField(GraphQLString, subscribe=never_names_a_channel),
            "broken": GraphQLField(GraphQLString, subscribe=refuse_to_follow),
            "secret": GraphQLField(
                GraphQLString,
                args={"name": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow("secret:{name}"),
            ),
        },
    ),
)
