"""Watch the ticker as a GraphQL subscription with `gql` (docs/graphql.md).

hubbub serve --graphql-schema hubbub.graphql.example:schema   # one terminal
hubbub demo ticker                                            # another: the prices
python examples/graphql_ticker.py EMUB                        # a third: EMUB's prices
"""

from __future__ import annotations

import asyncio
import sys

from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport

PRICE = gql("subscription Price($symbol: String!) { price(symbol: $symbol) { symbol price change } }")


async def watch(url: str, symbol: str, count: int | None = None) -> None:
    """Print each price update of `symbol` (stop after `count`, or run until Ctrl-C)."""
    transport = WebsocketsTransport(url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport) as session:
        seen = 0
        async for result in session.subscribe(GraphQLRequest(PRICE, variable_values={"symbol": symbol})):
            price = result["price"]
            print(f"{price['symbol']} {price['price']:.2f} ({price['change']:+.3f}%)", flush=True)
            seen += 1
            if seen == count:
                return


if __name__ == "__main__":
    asyncio.run(watch("ws://127.0.0.1:8000/graphql", sys.argv[1] if len(sys.argv) > 1 else "EMUB"))
