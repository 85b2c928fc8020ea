"""Scenario `cluster`: one process against `--workers 2` over Redis, same CPU budget.

N readers subscribe to one channel; publications (with a `ts`) go through the HTTP API, which
with workers lands on either process, so most deliveries cross Redis. Three loads: a light one
for latency, a heavy one for throughput (batches), and single publishes from many WebSocket
publishers at once (`singles`, what a chat's senders do: with workers they connect to either
process, and each process pipelines the publishes of a loop turn to Redis together). On a
2-core machine both servers get core 0 (the load generator has core 1), so this measures what
the Redis hop costs, not multi-core scaling. `--redis-cluster` adds two workers over a Redis
Cluster (3 masters, 3 replicas, started here).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench.measure import Tally
from bench.process import CpuMeter, ServerProcess, free_port, redis_cluster, redis_server
from bench.wsreader import Reader, open_reader

CHANNEL = "fanout"
PADDING = "x" * 60  # about 100-byte publications


async def subscribe_readers(server: ServerProcess, count: int, tally: Tally) -> list[Reader]:
    tally.expect_replies(count * 2)
    semaphore = asyncio.Semaphore(50)
    readers: list[Reader] = []

    async def one() -> None:
        async with semaphore:
            reader = await open_reader("127.0.0.1", server.port, "/connection/websocket", tally.on_text)
            reader.send_json({"id": 1, "connect": {}})
            reader.send_json({"id": 2, "subscribe": {"channel": CHANNEL}})
            readers.append(reader)

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.wait_for(tally.all_replied.wait(), 60)
    return readers


async def offer(server: ServerProcess, tally: Tally, rate: float, seconds: float, batch: int) -> dict[str, float]:
    """Publish `rate` publications per second for `seconds`, `batch` per request (a batch fans out in
    one loop turn, so it coalesces); measure what the readers got."""
    tally.counting, tally.delivered, tally.latencies = True, 0, []
    meter = CpuMeter(server.pid)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    async with aiohttp.ClientSession() as http:
        while loop.time() - started < seconds:
            publications = [
                {"channel": CHANNEL, "data": {"pad": PADDING, "ts": time.time() * 1000}} for _ in range(batch)
            ]
            async with http.post(f"{server.api_url}/api/batch", json={"publications": publications}) as response:
                response.raise_for_status()
            sent += batch
            await asyncio.sleep(max(0.0, started + sent / rate - loop.time()))  # the offered rate's clock
    return await finished(tally, meter, loop.time() - started, sent)


async def finished(tally: Tally, meter: CpuMeter, elapsed: float, sent: int) -> dict[str, float]:
    """A load's figures, once the last deliveries had half a second to arrive."""
    await asyncio.sleep(0.5)  # the last deliveries
    tally.counting = False
    result = tally.summary(elapsed)
    result.update(meter.read())
    result["offered_per_s"] = sent / elapsed
    return result


async def offer_singles(
    server: ServerProcess, tally: Tally, rate: float, seconds: float, publishers: int
) -> dict[str, float]:
    """`rate` single `publish` commands per second in all, spread over `publishers` WebSocket
    connections; measure what the readers got."""
    answered = Tally()
    senders = [
        await open_reader("127.0.0.1", server.port, "/connection/websocket", answered.on_text)
        for _ in range(publishers)
    ]
    answered.expect_replies(publishers)
    for sender in senders:
        sender.send_json({"id": 1, "connect": {}})
    await asyncio.wait_for(answered.all_replied.wait(), 30)
    tally.counting, tally.delivered, tally.latencies = True, 0, []
    meter = CpuMeter(server.pid)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while loop.time() - started < seconds:
        due = int((loop.time() - started) * rate) - sent
        for n in range(sent, sent + due):
            data = {"pad": PADDING, "ts": time.time() * 1000}
            senders[n % publishers].send_json({"id": n + 2, "publish": {"channel": CHANNEL, "data": data}})
        sent += max(due, 0)
        await asyncio.sleep(0.002)  # the offered rate's clock
    result = await finished(tally, meter, loop.time() - started, sent)
    for sender in senders:
        if sender.transport is not None:
            sender.transport.close()
    return result


async def measure(server: ServerProcess, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    tally = Tally()
    readers = await subscribe_readers(server, args.readers, tally)
    results = {
        "latency": await offer(server, tally, args.light_rate, args.duration, 1),
        "throughput": await offer(server, tally, args.heavy_rate, args.duration, args.batch),
        "singles": await offer_singles(server, tally, args.singles_rate, args.duration, args.publishers),
    }
    for reader in readers:
        if reader.transport is not None:
            reader.transport.close()
    return results


def worker_flags(broker: str, limits: tuple[str, ...]) -> list[str]:
    """`hubbub serve` flags for two workers sharing `broker` (a fresh key prefix each run)."""
    return [
        "--workers", "2", "--broker", broker, "--redis-prefix", f"bench-{uuid.uuid4().hex}",
        "--port", str(free_port()), "--api-port", str(free_port()), *limits,
    ]  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    rows: list[tuple[str, dict[str, dict[str, float]]]] = []
    limits = ("--publish-rate", "none", "--command-rate", "none", "--user-publish-rate", "none")
    async with ServerProcess.start(0, *limits) as single:
        rows.append(("1 process", await measure(single, args)))
    with tempfile.TemporaryDirectory() as folder:
        with redis_server(Path(folder) / "redis") as url:
            async with ServerProcess.start(0, *worker_flags(url, limits)) as workers:
                rows.append(("2 workers + Redis", await measure(workers, args)))
        if args.redis_cluster:
            with redis_cluster(Path(folder) / "cluster") as cluster:
                async with ServerProcess.start(0, *worker_flags(cluster.url, limits)) as workers:
                    rows.append(("2 workers + Cluster", await measure(workers, args)))
    print(
        f"\ncluster: {args.readers} readers on one channel; light {args.light_rate:.0f}/s, "
        f"heavy {args.heavy_rate:.0f}/s publications in batches of {args.batch}, singles {args.singles_rate:.0f}/s "
        f"from {args.publishers} WebSocket publishers; {args.duration:.0f} s each; servers share core 0"
    )
    print(
        f"{'setup':<20}{'load':<12}{'delivered/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'server CPU':>12}{'loadgen CPU':>13}"
    )
    for name, result in rows:
        for load, row in result.items():
            print(
                f"{name:<20}{load:<12}{row['delivered_per_s']:>13,.0f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
                f"{row['server_cpu']:>11.0%}{row['loadgen_cpu']:>12.0%}"
            )
    for name, result in rows[1:]:
        for load in ("throughput", "singles"):
            base, other = rows[0][1][load], result[load]
            if base["delivered_per_s"]:
                print(
                    f"{name} / 1 process, {load}: {other['delivered_per_s'] / base['delivered_per_s']:.2f}x "
                    f"deliveries/s, p99 {other['p99_ms'] / max(base['p99_ms'], 0.001):.2f}x"
                )
    for name, result in rows:
        for load, row in result.items():
            if row["loadgen_cpu"] > 0.9:
                print(f"WARNING ({name}, {load}): the load generator used {row['loadgen_cpu']:.0%} of a core")
    return 0
