"""`hubbub demo ticker`: a simulated market feed and live sports scores, through the HTTP API.

Prices follow a random walk (each update multiplies the price by exp(N(0, 0.1%))). Every tick
publishes one batch (`POST /api/batch`), so thousands of updates per second cost a handful of
requests. The symbol and game lists go to `ticker:symbols`, so a page knows what to subscribe to.
"""

from __future__ import annotations

import asyncio
import math
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TICK = 0.1  # seconds between batches
TEAMS = ["Lions", "Tigers", "Bears", "Wolves", "Hawks", "Sharks", "Eagles", "Foxes"]


def symbol_names(count: int, seed: int = 7) -> list[str]:
    """Distinct, stable, ticker-like names: AXQ, BLMR, ..."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice((3, 4))))
        if name not in names:
            names.append(name)
    return names


@dataclass
class Feed:
    symbols: list[str]
    rng: random.Random = field(default_factory=random.Random)
    prices: dict[str, float] = field(default_factory=dict)
    opens: dict[str, float] = field(default_factory=dict)
    games: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for symbol in self.symbols:
            self.prices[symbol] = self.opens[symbol] = round(self.rng.uniform(10, 500), 2)
        for number in range(len(TEAMS) // 2):
            home, away = TEAMS[2 * number], TEAMS[2 * number + 1]
            self.games[f"game{number + 1}"] = {"home": home, "away": away, "home_score": 0, "away_score": 0}

    def price_update(self, symbol: str) -> dict[str, Any]:
        price = max(0.01, self.prices[symbol] * math.exp(self.rng.gauss(0, 0.001)))
        self.prices[symbol] = price
        change = (price / self.opens[symbol] - 1) * 100
        return {"symbol": symbol, "price": round(price, 2), "change": round(change, 3), "ts": time.time() * 1000}

    def score_update(self) -> tuple[str, dict[str, Any]]:
        game = self.rng.choice(list(self.games))
        state = self.games[game]
        state["home_score" if self.rng.random() < 0.5 else "away_score"] += 1
        return game, {**state, "ts": time.time() * 1000}

    def index(self) -> dict[str, Any]:
        return {"symbols": self.symbols, "games": list(self.games)}


async def run_ticker(
    api_url: str,
    *,
    symbols: int = 50,
    rate: float = 200.0,
    duration: float | None = None,
    api_key: str | None = None,
    report: bool = True,
) -> int:
    """Publish until `duration` seconds have passed (forever when None); return updates sent."""
    feed = Feed(symbol_names(symbols))
    headers = {"Authorization": f"apikey {api_key}"} if api_key else {}
    url = api_url.rstrip("/") + "/api/batch"
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    carry = 0.0
    next_report = started + 1
    sent_at_report = 0
    async with aiohttp.ClientSession(headers=headers) as http:
        await _post(http, url, [{"channel": "ticker:symbols", "data": feed.index()}])
        for game, state in feed.games.items():
            await _post(http, url, [{"channel": f"scores:{game}", "data": {**state, "ts": time.time() * 1000}}])
        tick = 0
        while duration is None or loop.time() - started < duration:
            carry += rate * TICK
            count, carry = int(carry), carry - int(carry)
            batch = [
                {"channel": f"ticker:{symbol}", "data": feed.price_update(symbol)}
                for symbol in (feed.rng.choice(feed.symbols) for _ in range(count))
            ]
            tick += 1
            if tick % 20 == 0:  # a goal somewhere every two seconds
                game, state = feed.score_update()
                batch.append({"channel": f"scores:{game}", "data": state})
            for start in range(0, len(batch), 1000):
                await _post(http, url, batch[start : start + 1000])
            sent += len(batch)
            now = loop.time()
            if report and now >= next_report:
                print(f"hubbub demo ticker: {sent - sent_at_report} updates/s, {sent} in all", flush=True)
                sent_at_report, next_report = sent, now + 1
            await asyncio.sleep(max(0.0, started + tick * TICK - loop.time()))  # the feed's clock
    return sent


async def _post(http: aiohttp.ClientSession, url: str, publications: list[dict[str, Any]]) -> None:
    if not publications:
        return
    async with http.post(url, json={"publications": publications}) as response:
        if response.status != 200:
            raise RuntimeError(f"publish failed ({response.status}): {await response.text()}")
