"""Scenario `ticker`: a price feed to many readers, some of them on slow links.

Readers subscribe to a few symbols each; the feed (hubbub's own demo, through the HTTP API)
publishes random-walk prices at a fixed total rate. Phase 1 runs the fast readers alone; phase
2 adds throttled readers that read only `slow_read_bytes` per second. Conflation must keep the
fast readers' p99 latency within 20% of phase 1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from bench.measure import Tally
from bench.process import CpuMeter, ServerProcess
from bench.wsreader import Reader, open_reader
from hubbub.demo import run_ticker, symbol_names


async def connect_readers(
    server: ServerProcess, count: int, symbols: list[str], per_reader: int, tally: Tally, budget: float | None
) -> list[Reader]:
    rng = random.Random(count)
    readers: list[Reader] = []
    tally.expect_replies(count * (per_reader + 1))
    semaphore = asyncio.Semaphore(50)

    async def one() -> None:
        async with semaphore:
            reader = await open_reader("127.0.0.1", server.port, "/connection/websocket", tally.on_text, budget)
            reader.send_json({"id": 1, "connect": {}})
            for number, symbol in enumerate(rng.sample(symbols, per_reader), start=2):
                reader.send_json({"id": number, "subscribe": {"channel": f"ticker:{symbol}"}})
            readers.append(reader)

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.wait_for(tally.all_replied.wait(), 60)  # every connect and subscribe answered
    return readers


async def phase(server: ServerProcess, args: argparse.Namespace, fast: Tally, slow: Tally | None) -> dict[str, float]:
    seconds: float = args.duration
    fast.counting, fast.delivered, fast.latencies = True, 0, []
    if slow is not None:
        slow.counting, slow.delivered, slow.latencies = True, 0, []
    meter = CpuMeter(server.pid)
    started = time.monotonic()
    await run_ticker(
        server.api_url,
        symbols=args.symbols,
        rate=args.rate,
        duration=seconds,
        report=False,
    )
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)  # let the last tick arrive before counting stops
    fast.counting = False
    if slow is not None:
        slow.counting = False
    result = fast.summary(elapsed)
    result.update(meter.read())
    if slow is not None:
        result["slow_delivered_per_s"] = slow.delivered / elapsed
    return result


async def run(args: argparse.Namespace) -> int:
    symbols = symbol_names(args.symbols)
    slow_count = round(args.readers * args.slow_fraction)
    fast_count = args.readers - slow_count
    async with ServerProcess.start(cpu=0) as server:
        fast, slow = Tally(), Tally()
        print(
            f"ticker: {fast_count} fast + {slow_count} slow readers, {args.symbols} symbols, "
            f"{args.per_reader} per reader, {args.rate:.0f} updates/s, {args.duration:.0f} s per phase"
        )
        await connect_readers(server, fast_count, symbols, args.per_reader, fast, None)
        alone = await phase(server, args, fast, None)
        slow_readers = await connect_readers(
            server,
            slow_count,
            symbols,
            args.per_reader,
            slow,
            args.slow_read_bytes,
        )
        mixed = await phase(server, args, fast, slow)
        cut = sum(1 for reader in slow_readers if reader.closed.done())
    within = within_bound(alone, mixed, args.slack_ms)
    report(alone, mixed, cut, slow_count, within)
    return 0 if within else 1


P99_BOUND = 1.2  # fast readers' p99 with slow readers may be at most 20% above their p99 alone


def within_bound(alone: dict[str, float], mixed: dict[str, float], slack_ms: float) -> bool:
    return mixed["p99_ms"] <= max(alone["p99_ms"] * P99_BOUND, alone["p99_ms"] + slack_ms)


def report(alone: dict[str, float], mixed: dict[str, float], cut: int, slow_count: int, within: bool) -> None:
    print()
    print(
        f"{'phase':<22}{'delivered/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'server CPU':>12}{'loadgen CPU':>13}"
    )
    for name, row in (("fast readers alone", alone), ("with slow readers", mixed)):
        print(
            f"{name:<22}{row['delivered_per_s']:>13,.0f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['max_ms']:>9.1f}{row['server_cpu']:>11.0%}{row['loadgen_cpu']:>12.0%}"
        )
    ratio = mixed["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else float("inf")
    verdict = "ok" if within else "FAILS the 20% bound"
    print(f"\nfast readers' p99 with slow readers / without: {ratio:.2f} ({verdict})")
    print(f"slow readers: {slow_count}, {mixed.get('slow_delivered_per_s', 0):,.0f} updates/s in all, cut: {cut}")
    for name, row in (("alone", alone), ("mixed", mixed)):
        if row["loadgen_cpu"] > 0.9:
            print(
                f"WARNING ({name}): the load generator used {row['loadgen_cpu']:.0%} of a core: it may be the"
                " limit, and latencies include its queueing"
            )
