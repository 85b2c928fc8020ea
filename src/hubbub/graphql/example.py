"""The ticker as GraphQL subscriptions: `hubbub serve --graphql-schema hubbub.graphql.example:schema`
serves it, `hubbub demo ticker` feeds it (docs/graphql.md walks through it).

Each subscription field's `subscribe` yields the hubbub channel to follow; its `resolve` gets each
publication's data as the root value. Nothing here is per user, so every subscriber of one
document shares one execution per price update.
"""

from __future__ import annotations

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

from hubbub.graphql import Channel, channel

Price = GraphQLObjectType(
    "Price",
    {
        "symbol": GraphQLField(GraphQLNonNull(GraphQLString)),
        "price": GraphQLField(GraphQLNonNull(GraphQLFloat)),
        "change": GraphQLField(GraphQLFloat, description="percent since the open"),
        "ts": GraphQLField(GraphQLFloat, description="milliseconds since the Unix epoch"),
    },
)

Score = GraphQLObjectType(
    "Score",
    {
        "home": GraphQLField(GraphQLString),
        "away": GraphQLField(GraphQLString),
        "homeScore": GraphQLField(GraphQLInt, resolve=lambda game, _info: game.get("home_score")),
        "awayScore": GraphQLField(GraphQLInt, resolve=lambda game, _info: game.get("away_score")),
    },
)


async def follow_symbol(_root: Any, _info: Any, symbol: str) -> AsyncIterator[Channel]:
    yield channel(f"ticker:{symbol}")  # the channel `hubbub demo ticker` publishes each price to


async def follow_game(_root: Any, _info: Any, game: str) -> AsyncIterator[Channel]:
    yield channel(f"scores:{game}")


def the_event(event: Any, _info: Any, **_arguments: Any) -> Any:
    return event  # the publication's data is the root value; its fields resolve from it


schema = GraphQLSchema(
    query=GraphQLObjectType("Query", {"version": GraphQLField(GraphQLString, resolve=lambda *_: "hubbub")}),
    subscription=GraphQLObjectType(
        "Subscription",
        {
            "price": GraphQLField(
                Price,
                args={"symbol": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow_symbol,
                resolve=the_event,
            ),
            "score": GraphQLField(
                Score,
                args={"game": GraphQLArgument(GraphQLNonNull(GraphQLString))},
                subscribe=follow_game,
                resolve=the_event,
            ),
        },
    ),
)
