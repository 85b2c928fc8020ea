"""`python -m bench SCENARIO [options]`: see docs/benchmarks.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from bench import cluster, suite, ticker


def run_load_generator(coroutine: Coroutine[Any, Any, int]) -> int:
    """The suite's load generator runs on uvloop when it is installed: on asyncio's loop it
    saturated its core at 100k deliveries/s before the servers did (docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="hubbub benchmarks")
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    feed = scenarios.add_parser("ticker", help="live prices to many readers, 10%% of them slow")
    feed.add_argument("--readers", type=int, default=2000)
    feed.add_argument("--symbols", type=int, default=500)
    feed.add_argument("--per-reader", type=int, default=10, help="symbols each reader subscribes to")
    feed.add_argument("--rate", type=float, default=5000.0, help="price updates per second in all")
    feed.add_argument("--slow-fraction", type=float, default=0.1)
    feed.add_argument("--slow-read-bytes", type=float, default=4096.0, help="bytes/s a slow reader reads")
    feed.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    feed.add_argument(
        "--slack-ms",
        type=float,
        default=0.0,
        help="p99 may also grow by this many ms (toy-scale runs, where 20%% of 3 ms is noise)",
    )
    nodes = scenarios.add_parser("cluster", help="1 process against 2 workers + Redis: cross-node latency, fan-out")
    nodes.add_argument("--readers", type=int, default=1000)
    nodes.add_argument("--light-rate", type=float, default=20.0, help="publications/s for the latency run")
    nodes.add_argument("--heavy-rate", type=float, default=1000.0, help="publications/s for the throughput run")
    nodes.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    nodes.add_argument("--batch", type=int, default=20, help="publications per request in the throughput run")
    nodes.add_argument("--singles-rate", type=float, default=1000.0, help="single publishes/s in the singles run")
    nodes.add_argument("--publishers", type=int, default=100, help="WebSocket publishers in the singles run")
    nodes.add_argument(
        "--redis-cluster", action="store_true", help="also two workers over a Redis Cluster (3 masters, 3 replicas)"
    )
    peers = scenarios.add_parser("suite", help="hubbub against websockets, aiohttp, python-socketio (ratios)")
    peers.add_argument("--servers", default="hubbub,websockets,aiohttp,socketio")
    peers.add_argument("--scenarios", default="fanout,channels,chat,idle")
    peers.add_argument("--seconds", type=float, default=0.0, help="seconds per phase (default 3; smoke 0.5)")
    peers.add_argument("--fanout", default="", help="fan-out sizes instead of 1000,5000 (e.g. 10000)")
    peers.add_argument("--uvloop", action="store_true", help="run every server on uvloop")
    peers.add_argument("--smoke", action="store_true", help="toy scale: checks that the suite works")
    peers.add_argument("--out", help="folder for results.json and the PNG charts")
    peers.add_argument("--hubbub-flags", default="", help='more `hubbub serve` flags, e.g. "--tcp-fastopen 256"')
    peers.add_argument("--deflate", action="store_true", help="load generator offers permessage-deflate")
    peers.add_argument("--fast-open", action="store_true", help="load generator connects with TCP Fast Open")
    args = parser.parse_args()
    if args.scenario == "ticker":
        return asyncio.run(ticker.run(args))
    if args.scenario == "suite":
        return run_load_generator(suite.run(args))
    if args.scenario == "cluster":
        return asyncio.run(cluster.run(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
