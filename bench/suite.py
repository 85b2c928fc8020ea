"""`python -m bench suite`: hubbub against the Python hubs a user would pick instead, same run.

Scenarios (docs/benchmarks.md): fan-out 1->1,000 and 1->5,000 on one channel (closed loop with
64 messages in flight, then open loop at fixed offered loads); 1,000 channels x 10 subscribers
with 100 publishers; a chat mix (1,000 users in 100 rooms, messages and typing signals); 20,000
idle connections (memory). Each server gets a fresh process per scenario, pinned to CPU 0.
"""

from __future__ import annotations

import asyncio
import functools
import json
import platform
import random
import resource
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from bench import report
from bench.adapters import HubbubAdapter
from bench.loadgen import OFFER_DEFLATE, Connection, Deliveries, Link, open_link, open_many, payload, percentile
from bench.servers import RunningServer, own_cpu, pin_load_generator, running, server_spec

WINDOW = 64
FAST_OPEN = [False]  # set by --fast-open: the load generator's sockets use TCP Fast Open
LG_SATURATED = 0.9


@dataclass
class Result:
    scenario: str
    server: str
    phase: str
    offered: float = 0.0
    delivered_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    lost: int = 0
    handshakes_per_s: float = 0.0
    kib_per_conn: float = 0.0
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0

    @property
    def loadgen_bound(self) -> bool:
        return self.loadgen_cpu >= LG_SATURATED


@dataclass(frozen=True)
class Scale:
    fanout: tuple[int, ...] = (1000, 5000)
    channels: int = 1000
    per_channel: int = 10
    channel_links: int = 1000
    publishers: int = 100
    users: int = 1000
    rooms: int = 100
    idle: int = 20000
    offered: tuple[float, ...] = (20_000.0, 100_000.0)
    chat_rate: float = 200.0  # chat messages/s in all; typing signals are 3x that
    room_users: int = 10000  # the rooms scenario: users in rooms of room_size
    room_size: int = 10
    room_rate: float = 1000.0  # messages/s in all (typing signals 3x that, not counted)
    reconnects: float = 0.01  # fraction of users reconnecting per second
    seconds: float = 3.0
    settle: float = 1.0  # seconds between connecting and reading the server's memory


SMOKE = Scale(
    fanout=(50,), channels=20, per_channel=3, channel_links=20, publishers=5, users=40, rooms=4, idle=200,
    offered=(2_000.0,), chat_rate=20.0, seconds=0.5, settle=0.1,
    room_users=200, room_rate=400.0, reconnects=0.5,
)  # fmt: skip


class Meter:
    """Server and load generator CPU (fractions of a core) over one phase."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.wall = time.perf_counter()
        self.server_cpu = server.cpu()
        self.own = own_cpu()

    def read(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.wall, 1e-9)
        return (self.server.cpu() - self.server_cpu) / elapsed, (own_cpu() - self.own) / elapsed


def _finish(result: Result, deliveries: Deliveries, started_ns: int, meter: Meter, expected: int) -> Result:
    span = max(deliveries.last_at - started_ns, 1) / 1e9
    result.delivered_per_s = deliveries.count / span
    result.p50_ms = percentile(deliveries.latencies, 0.5)
    result.p99_ms = percentile(deliveries.latencies, 0.99)
    result.max_ms = percentile(deliveries.latencies, 1.0)
    result.lost = max(0, expected - deliveries.count)
    result.server_cpu, result.loadgen_cpu = meter.read()
    return result


async def _connect(
    server: RunningServer, channel_sets: list[list[str]], deliveries: Deliveries, settle: float
) -> tuple[list[Connection], float, float]:
    """Open links; returns them, handshakes/s and the server's idle KiB per connection."""
    before = server.rss_kib()
    links, seconds = await open_many(server.spec.adapter, server.port, channel_sets, deliveries, fast_open=FAST_OPEN[0])
    await asyncio.sleep(settle)  # a measurement interval: let the server's memory settle, not synchronisation
    return links, len(links) / seconds, (server.rss_kib() - before) / max(len(links), 1)


async def _closed_loop(
    server: RunningServer,
    publisher: Connection,
    deliveries: Deliveries,
    subscribers: int,
    seconds: float,
    scenario: str,
) -> Result:
    """At most WINDOW messages not yet delivered to every subscriber, for `seconds`."""
    deliveries.reset(time_every_message=False)
    meter = Meter(server)
    started = time.monotonic_ns()
    deadline = time.perf_counter() + seconds
    sent = 0
    adapter = server.spec.adapter
    while time.perf_counter() < deadline:
        allowed = WINDOW - (sent - deliveries.count // subscribers)
        if allowed > 0:
            publisher.send_many([adapter.publish("bench", payload(sent + i), sent + i + 10) for i in range(allowed)])
            sent += allowed
            await asyncio.sleep(0)
        elif not await deliveries.reach((sent - WINDOW + 1) * subscribers, 10):
            break
    await deliveries.drain(sent * subscribers)
    return _finish(Result(scenario, server.spec.name, "closed loop"), deliveries, started, meter, sent * subscribers)


async def _open_loop(
    server: RunningServer,
    targets: list[tuple[Connection, str]],
    fanout: int,
    deliveries: Deliveries,
    offered: float,
    seconds: float,
    scenario: str,
) -> Result:
    """Publish at offered/fanout publications per second, spread over `targets` in turn."""
    deliveries.reset(time_every_message=True)
    rate = offered / fanout
    meter = Meter(server)
    started = time.monotonic_ns()
    began = time.perf_counter()
    sent = 0
    adapter = server.spec.adapter
    while (elapsed := time.perf_counter() - began) < seconds:
        due = int(elapsed * rate) - sent
        for i in range(sent, sent + due):
            link, channel = targets[i % len(targets)]
            link.send(adapter.publish(channel, payload(i), i + 10))
        sent += max(due, 0)
        await asyncio.sleep(0.002)  # the publishing clock's tick
    await deliveries.drain(sent * fanout)
    return _finish(
        Result(scenario, server.spec.name, f"open loop {offered / 1000:g}k/s", offered),
        deliveries,
        started,
        meter,
        sent * fanout,
    )


async def fanout(server: RunningServer, subscribers: int, scale: Scale) -> list[Result]:
    name = f"fan-out 1->{subscribers:,}"
    deliveries = Deliveries()
    links, handshakes, kib = await _connect(server, [["bench"]] * subscribers, deliveries, scale.settle)
    (publisher,), _ = await open_many(server.spec.adapter, server.port, [[]], Deliveries())
    try:
        results = [await _closed_loop(server, publisher, deliveries, subscribers, scale.seconds, name)]
        for offered in scale.offered:
            results.append(
                await _open_loop(server, [(publisher, "bench")], subscribers, deliveries, offered, scale.seconds, name)
            )
        for result in results:
            result.handshakes_per_s, result.kib_per_conn = handshakes, kib
        return results
    finally:
        for link in [*links, publisher]:
            link.close()


async def channels(server: RunningServer, scale: Scale) -> list[Result]:
    name = f"{scale.channels:,} channels x {scale.per_channel}"
    stride = scale.channels // scale.per_channel
    sets = [
        [f"ch-{(i + stride * k) % scale.channels}" for k in range(scale.per_channel)]
        for i in range(scale.channel_links)
    ]
    deliveries = Deliveries()
    links, handshakes, kib = await _connect(server, sets, deliveries, scale.settle)
    publishers, _ = await open_many(server.spec.adapter, server.port, [[]] * scale.publishers, Deliveries())
    per_publisher = scale.channels // scale.publishers
    targets = [(publishers[c // per_publisher], f"ch-{c}") for c in range(scale.channels)]
    try:
        results = [
            await _open_loop(server, targets, scale.per_channel, deliveries, offered, scale.seconds, name)
            for offered in scale.offered
        ]
        for result in results:
            result.handshakes_per_s, result.kib_per_conn = handshakes, kib
        return results
    finally:
        for link in [*links, *publishers]:
            link.close()


async def chat(server: RunningServer, scale: Scale) -> list[Result]:
    name = f"chat {scale.users:,} users / {scale.rooms} rooms"
    sets = [[f"room-{u % scale.rooms}", f"typing:{u % scale.rooms}"] for u in range(scale.users)]
    deliveries = Deliveries()
    links, handshakes, kib = await _connect(server, sets, deliveries, scale.settle)
    targets: list[tuple[Connection, str]] = []
    for u, link in enumerate(links):  # each user: one message for three typing signals
        room = u % scale.rooms
        targets += [(link, f"typing:{room}")] * 3 + [(link, f"room-{room}")]
    fanout = scale.users // scale.rooms
    try:
        result = await _open_loop(
            server, targets, fanout, deliveries, scale.chat_rate * 4 * fanout, scale.seconds, name
        )
        result.handshakes_per_s, result.kib_per_conn = handshakes, kib
        return [result]
    finally:
        for link in links:
            link.close()


async def rooms(server: RunningServer, scale: Scale) -> list[Result]:
    """The chat a user would run first: 10,000 users in rooms of 10 (history, presence,
    join/leave, typing) while 1% of them reconnect every second. hubbub's clients resubscribe
    from where they left off (recovery); the peers' can only resubscribe. Messages are counted
    and timed, typing signals (3 per message) are not; `lost` is messages a subscriber never got."""
    count = scale.room_users // scale.room_size
    name = f"rooms {scale.room_users:,} users / {count:,} rooms of {scale.room_size}"
    # The room last: its subscribe reply is the step's end, and what it recovers comes in it.
    sets = [[f"typing:{u % count}", f"rooms:{u % count}"] for u in range(scale.room_users)]
    adapter = server.spec.adapter
    track = type(adapter) is HubbubAdapter  # hubbub's own protocol: recovery by offset
    deliveries = Deliveries()
    before = server.rss_kib()
    links, seconds = await open_many(adapter, server.port, sets, deliveries, fast_open=FAST_OPEN[0], track=track)
    handshakes = len(links) / seconds
    await asyncio.sleep(scale.settle)  # a measurement interval: let the server's memory settle, not synchronisation
    kib = (server.rss_kib() - before) / len(links)
    publishers, _ = await open_many(adapter, server.port, [[]] * scale.publishers, Deliveries())
    rng = random.Random(7)
    away: set[int] = set()
    reconnecting: set[asyncio.Task[None]] = set()

    async def reconnect(user: int) -> None:
        old = links[user]
        since = None
        if isinstance(old, Link) and old.offset is not None and old.epoch is not None:
            since = {f"rooms:{user % count}": (old.offset, old.epoch)}
        old.close()
        try:
            links[user] = await open_link(adapter, server.port, sets[user], deliveries, since=since, track=track)
        finally:
            away.discard(user)

    deliveries.reset(time_every_message=True)
    meter = Meter(server)
    started = time.monotonic_ns()
    began = time.perf_counter()
    sent = typed = left = 0
    while (elapsed := time.perf_counter() - began) < scale.seconds:
        for n in range(sent, int(elapsed * scale.room_rate)):
            publisher = publishers[n % len(publishers)]
            publisher.send(adapter.publish(f"rooms:{rng.randrange(count)}", payload(n), n + 10))
            sent = n + 1
        for n in range(typed, int(elapsed * scale.room_rate * 3)):
            publisher = publishers[n % len(publishers)]
            publisher.send(adapter.publish(f"typing:{rng.randrange(count)}", "typing", 10_000_000 + n))
            typed = n + 1
        for _ in range(left, int(elapsed * scale.room_users * scale.reconnects)):
            user = rng.randrange(len(links))
            left += 1
            if user not in away:
                away.add(user)
                task = asyncio.ensure_future(reconnect(user))
                reconnecting.add(task)
                task.add_done_callback(reconnecting.discard)
        await asyncio.sleep(0.002)  # the publishing clock's tick
    await asyncio.gather(*reconnecting)
    expected = sent * scale.room_size
    await deliveries.drain(expected)
    offered = scale.room_rate * scale.room_size
    phase = f"{offered / 1000:g}k/s, {scale.reconnects:.0%}/s reconnect"
    result = _finish(Result(name, server.spec.name, phase, offered), deliveries, started, meter, expected)
    result.handshakes_per_s, result.kib_per_conn = handshakes, kib
    for link in [*links, *publishers]:
        link.close()
    return [result]


async def idle(server: RunningServer, scale: Scale) -> list[Result]:
    links, handshakes, kib = await _connect(server, [["idle"]] * scale.idle, Deliveries(), scale.settle)
    for link in links:
        link.close()
    return [
        Result(
            f"{scale.idle:,} idle connections", server.spec.name, "idle", handshakes_per_s=handshakes, kib_per_conn=kib
        )
    ]


Job = Callable[[RunningServer], Awaitable[list[Result]]]


def jobs_for(scenario: str, scale: Scale) -> list[Job]:
    """One job per server process: each fan-out size gets a fresh server."""
    if scenario == "fanout":
        return [functools.partial(fanout, subscribers=n, scale=scale) for n in scale.fanout]
    known: dict[str, Job] = {
        "channels": functools.partial(channels, scale=scale),
        "chat": functools.partial(chat, scale=scale),
        "rooms": functools.partial(rooms, scale=scale),
        "idle": functools.partial(idle, scale=scale),
    }
    if scenario not in known:
        raise SystemExit(f"unknown scenario {scenario!r}: fanout, channels, chat, rooms, idle")
    return [known[scenario]]


def raise_open_files(needed: int) -> int:
    """Root may raise the hard limit; returns the connections one process can hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 1000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200


async def run(args: Namespace) -> int:
    scale = SMOKE if args.smoke else Scale()
    if args.seconds:
        scale = Scale(**{**asdict(scale), "seconds": args.seconds})
    if args.fanout:
        scale = Scale(**{**asdict(scale), "fanout": tuple(int(n) for n in args.fanout.split(","))})
    limit = raise_open_files(scale.idle)
    if limit < scale.idle:
        print(f"note: open-file limit allows {limit:,} connections, not {scale.idle:,}: idle scenario scaled down")
        scale = Scale(**{**asdict(scale), "idle": limit})
    pinned = pin_load_generator()
    FAST_OPEN[0] = args.fast_open
    OFFER_DEFLATE[0] = args.deflate
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    results: list[Result] = []
    print(report.machine(names, pinned, args.uvloop))
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as folder:
        for scenario in scenarios:
            for name in names:
                spec = server_spec(name)
                for job in jobs_for(scenario, scale):
                    extra = args.hubbub_flags.split() if name == "hubbub" or name.startswith("hubbub@") else []
                    async with running(spec, Path(folder), args.uvloop, pinned, extra) as server:
                        try:
                            found = await job(server)
                        except Exception as exc:  # one server failing must not end the comparison
                            print(f"  {name}: {scenario} failed: {exc!r}")
                            continue
                    for result in found:
                        print("  " + report.line(result))
                    results += found
    print()
    print(report.tables(results))
    if args.out:
        meta = {
            "machine": report.machine(names, pinned, args.uvloop),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "when": time.strftime("%Y-%m-%d %H:%M"),
        }
        for path in save(Path(args.out), meta, results):
            print(f"wrote {path}")
    return 0


def save(out: Path, meta: dict[str, str], results: list[Result]) -> list[Path]:
    """results.json and the charts, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=1))
    return [out / "results.json", *report.plots(results, out, meta)]


def versions() -> str:
    names = ["websockets", "aiohttp", "python-socketio", "msgspec", "uvloop", "hubbub"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:
            found.append(f"{name} -")
    return f"Python {platform.python_version()}; " + ", ".join(found)
