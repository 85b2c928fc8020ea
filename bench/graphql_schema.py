"""The schema `hubbub-graphql` serves in the bench suite: one subscription field that follows a
channel and returns each publication's data (the load generator's marked payload) as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLArgument, GraphQLField, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString

from hubbub.graphql import Channel, channel


async def follow(_root: Any, _info: Any, channel_name: str) -> AsyncIterator[Channel]:
    yield channel(channel_name)


schema = GraphQLSchema(
    query=GraphQLObjectType("Query", {"ok": GraphQLField(GraphQLString, resolve=lambda *_: "ok")}),
    subscription=GraphQLObjectType(
        "Subscription",
        {
            "feed": GraphQLField(
                GraphQLString,
                args={"channel": GraphQLArgument(GraphQLNonNull(GraphQLString), out_name="channel_name")},
                subscribe=follow,
                resolve=lambda event, _info, **_: event,
            )
        },
    ),
)
