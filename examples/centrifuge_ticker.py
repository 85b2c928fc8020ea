"""Watch the ticker with Centrifugo's Python SDK, centrifuge-python (docs/centrifugo-sdks.md).

hubbub serve                                     # one terminal
hubbub demo ticker                               # another: the prices
python examples/centrifuge_ticker.py EMUB        # a third: EMUB's prices
"""

from __future__ import annotations

import asyncio
import sys

from centrifuge import Client, PublicationContext, SubscriptionEventHandler


class Prices(SubscriptionEventHandler):
    """Prints each price update; `done` is set after `count` of them (None: never)."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.seen = 0
        self.done = asyncio.Event()

    async def on_publication(self, ctx: PublicationContext) -> None:
        if self.done.is_set():  # stopping: the rest is not asked for
            return
        price = ctx.pub.data  # JSON mode: the decoded value
        print(f"{price['symbol']} {price['price']:.2f} ({price['change']:+.3f}%)", flush=True)
        self.seen += 1
        if self.seen == self.count:
            self.done.set()


async def watch(url: str, symbol: str, count: int | None = None) -> None:
    """Subscribe to `ticker:SYMBOL` (stop after `count` updates, or run until Ctrl-C)."""
    client = Client(url)  # with a token key on the server: Client(url, token=...) or get_token=...
    prices = Prices(count)
    subscription = client.new_subscription(f"ticker:{symbol}", events=prices)
    await client.connect()
    await subscription.subscribe()
    try:
        await prices.done.wait()
    finally:
        await client.disconnect()


if __name__ == "__main__":
    asyncio.run(watch("ws://127.0.0.1:8000/connection/centrifugo", sys.argv[1] if len(sys.argv) > 1 else "EMUB"))
