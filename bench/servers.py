"""The servers a suite run compares: hubbub and the naive Python hubs, each in its own process.

Every server runs pinned to CPU 0 (`taskset`), the load generator on CPU 1. The started
process is the server itself, so its /proc figures (CPU, RSS) are the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.adapters import (
    CENTRIFUGO_JSON,
    CENTRIFUGO_PROTOBUF,
    HUBBUB,
    HUBBUB_GRAPHQL,
    HUBBUB_GRAPHQL_100,
    HUBBUB_SSE,
    PLAIN,
    SOCKETIO,
    Adapter,
)
from bench.process import cpu_seconds, free_port

# hubbub as shipped (embedded defaults: SQLite history on the default namespace), with the
# per-connection and per-IP abuse limits lifted: one load generator is a single IP.
HUBBUB_NAMESPACES = {
    "default": {"history_size": 100, "history_ttl": 3600, "presence": True, "publish": "anyone"},
    "typing": {"publish": "anyone"},  # chat typing signals: no history
    # the rooms scenario: rooms of 10 with history, presence and join/leave
    "rooms": {"history_size": 100, "history_ttl": 3600, "presence": True, "join_leave": True, "publish": "anyone"},
}
HUBBUB_FLAGS = [
    "--connect-rate-per-ip", "none", "--max-connections-per-ip", "none", "--max-connections-per-user", "none",
    "--command-rate", "none", "--publish-rate", "none", "--log-level", "warning",
    "--namespaces", json.dumps(HUBBUB_NAMESPACES),
]  # fmt: skip


GRAPHQL_FLAGS = ("--graphql-schema", "bench.graphql_schema:schema")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    adapter: Adapter
    module: str
    extra: tuple[str, ...] = field(default=())
    source: str | None = None  # another checkout's src/ (hubbub@PATH): a before/after in one run

    def command(self, port: int, folder: Path, uvloop: bool) -> list[str]:
        if self.module == "hubbub":
            history = str(folder / f"history-{port}.db")
            args = [
                "serve",
                "--port",
                str(port),
                "--api-port",
                "0",
                "--history-path",
                history,
                *HUBBUB_FLAGS,
                *self.extra,
            ]
            command = [sys.executable, "-m", "hubbub", *args, "--event-loop", "uvloop" if uvloop else "asyncio"]
            # `env` execs the server, so the measured PID is still the server's own
            return ["env", f"PYTHONPATH={self.source}", *command] if self.source else command
        return [sys.executable, "-m", self.module, str(port), *(["--uvloop"] if uvloop else [])]


SERVERS = {
    "hubbub": ServerSpec("hubbub", HUBBUB, "hubbub"),
    "websockets": ServerSpec("websockets", PLAIN, "bench.peers.websockets_broadcast"),
    "aiohttp": ServerSpec("aiohttp", PLAIN, "bench.peers.aiohttp_loop"),
    "socketio": ServerSpec("socketio", SOCKETIO, "bench.peers.socketio_room"),
    # hubbub through a host server's WebSocket (one port): the same protocol and settings
    "hubbub-asgi": ServerSpec("hubbub-asgi", HUBBUB, "bench.peers.hubbub_asgi"),
    "hubbub-aiohttp": ServerSpec("hubbub-aiohttp", HUBBUB, "bench.peers.hubbub_aiohttp"),
    # hubbub itself, its subscribers on Server-Sent Events instead of WebSockets
    "hubbub-sse": ServerSpec("hubbub-sse", HUBBUB_SSE, "hubbub"),
    # hubbub itself, its subscribers on GraphQL (graphql-transport-ws): one shared document, or 100
    "hubbub-graphql": ServerSpec("hubbub-graphql", HUBBUB_GRAPHQL, "hubbub", GRAPHQL_FLAGS),
    "hubbub-graphql-100": ServerSpec("hubbub-graphql-100", HUBBUB_GRAPHQL_100, "hubbub", GRAPHQL_FLAGS),
    # hubbub itself, every client on Centrifugo's client protocol (docs/centrifugo-sdks.md)
    "hubbub-centrifugo-json": ServerSpec("hubbub-centrifugo-json", CENTRIFUGO_JSON, "hubbub"),
    "hubbub-centrifugo-protobuf": ServerSpec("hubbub-centrifugo-protobuf", CENTRIFUGO_PROTOBUF, "hubbub"),
}
READY = re.compile(r"listening on|WebSocket on ws://")


@dataclass
class RunningServer:
    spec: ServerSpec
    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


def pin_load_generator() -> bool:
    """Move this process to CPU 1 (servers get CPU 0). False on a one-core machine."""
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return False
    os.sched_setaffinity(0, {1})
    return True


@contextlib.asynccontextmanager
async def running(
    spec: ServerSpec, folder: Path, uvloop: bool, pinned: bool, extra: list[str] | None = None
) -> AsyncIterator[RunningServer]:
    port = free_port()
    command = [*spec.command(port, folder, uvloop), *(extra or [])]
    if pinned:
        command = ["taskset", "-c", "0", *command]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{spec.name} exited before it served")
                if READY.search(line):
                    break
        drain = asyncio.ensure_future(_drain(process.stdout))
        yield RunningServer(spec, process, port)
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()  # the process this function started, by its handle
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading the server's output so a chatty server never blocks on a full pipe."""
    while await stream.readline():
        pass


def own_cpu() -> float:
    return cpu_seconds()


def server_spec(name: str) -> ServerSpec:
    """A suite server by name; `hubbub@PATH` is hubbub run from the source folder PATH (for
    example a `git worktree` of an older commit's `src`), measured beside today's in one run."""
    if name.startswith("hubbub@"):
        source = str(Path(name.removeprefix("hubbub@")).resolve())
        if not (Path(source) / "hubbub" / "__init__.py").is_file():
            raise SystemExit(f"{name}: no hubbub package in {source}")
        return ServerSpec(name, HUBBUB, "hubbub", source=source)
    if name not in SERVERS:
        raise SystemExit(f"unknown server {name!r}: one of {', '.join(SERVERS)} or hubbub@PATH")
    return SERVERS[name]
