"""The same ticker schema written with Strawberry and with Ariadne, as docs/graphql.md shows."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from ariadne import QueryType, SubscriptionType, gql, make_executable_schema

from hubbub.graphql import PERSONAL_DIRECTIVE, Channel, GraphQLContext, channel

# ---- Strawberry: types are classes, so a publication's data (a dict) is converted ----------


@strawberry.type
class Ticker:
    symbol: str
    price: float


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:  # queries run with no root value: fields with resolvers
        return "world"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticker(self, symbol: str) -> AsyncGenerator[Ticker, None]:
        yield channel(f"ticker:{symbol}", convert=lambda data: Ticker(**data))  # type: ignore[misc]


strawberry_schema = strawberry.Schema(query=Query, subscription=Subscription)

# ---- Ariadne: SDL, with @personal where a field depends on who asks -------------------------

type_defs = gql(
    PERSONAL_DIRECTIVE
    + """
    type Query { hello: String }
    type Ticker { symbol: String! price: Float! }
    type Subscription {
        ticker(symbol: String!): Ticker
        inbox: String @personal
    }
    """
)
query = QueryType()
query.set_field("hello", lambda *_: "world")
subscription = SubscriptionType()


@subscription.source("ticker")
async def ticker_source(_obj: Any, _info: Any, symbol: str) -> AsyncGenerator[Channel, None]:
    yield channel(f"ticker:{symbol}")


@subscription.field("ticker")
def ticker_field(event: Any, _info: Any, symbol: str) -> Any:
    return event


@subscription.source("inbox")
async def inbox_source(_obj: Any, _info: Any) -> AsyncGenerator[Channel, None]:
    yield channel("notes:all")


@subscription.field("inbox")
def inbox_field(event: Any, info: Any) -> str | None:
    context: GraphQLContext = info.context
    return str(event["text"]) if event.get("to") == context.user else None


ariadne_schema = make_executable_schema(type_defs, query, subscription)
