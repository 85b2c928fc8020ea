"""The server under test in its own process, pinned to a core, with CPU accounting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one when pid is None)."""
    with open(f"/proc/{pid or 'self'}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the workers of `--workers`)."""
    total = cpu_seconds(pid)
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    with contextlib.suppress(OSError):
                        total += tree_cpu_seconds(int(child))
    return total


class CpuMeter:
    """CPU used by the server (with its workers) and by this load generator, as core fractions."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.started = asyncio.get_running_loop().time()
        self.server = tree_cpu_seconds(server_pid)
        self.own = cpu_seconds()

    def read(self) -> dict[str, float]:
        elapsed = asyncio.get_running_loop().time() - self.started
        return {
            "server_cpu": (tree_cpu_seconds(self.server_pid) - self.server) / elapsed,
            "loadgen_cpu": (cpu_seconds() - self.own) / elapsed,
        }


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    port: int
    api_url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def memory_kib(self, field: str = "VmRSS") -> int:
        """VmRSS (now) or VmHWM (peak) of the server, in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, cpu: int | None = 0, *flags: str) -> AsyncIterator[ServerProcess]:
        """`hubbub serve` on free ports, pinned to `cpu`; this process moves to another core."""
        command = [
            sys.executable,
            "-m",
            "hubbub",
            "serve",
            "--port",
            "0",
            "--api-port",
            "0",
            "--history-path",
            "none",
            "--connect-rate-per-ip",
            "none",
            "--max-connections-per-ip",
            "none",
            "--log-level",
            "warning",
            *flags,
        ]
        async with cls._run(command, cpu, r"WebSocket on ws://[^:]+:(\d+)/") as server:
            yield server

    @classmethod
    @contextlib.asynccontextmanager
    async def start_mount(cls, kind: str, cpu: int | None = 0, **settings: str) -> AsyncIterator[ServerProcess]:
        """hubbub mounted in a host server (`asgi`: FastAPI/uvicorn, `aiohttp`), on a free port."""
        port = free_port()
        overrides = [f"{key}={value}" for key, value in settings.items()]
        command = [sys.executable, "-m", f"bench.peers.hubbub_{kind}", str(port), *overrides]
        async with cls._run(command, cpu, r"listening on 127\.0\.0\.1:(\d+)") as server:
            yield server

    @classmethod
    @contextlib.asynccontextmanager
    async def _run(cls, command: list[str], cpu: int | None, port_line: str) -> AsyncIterator[ServerProcess]:
        cores = os.cpu_count() or 1
        if cpu is not None and cores > 1 and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
            os.sched_setaffinity(0, {(cpu + 1) % cores})
        env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, env=env)
        try:
            assert process.stdout is not None
            port, api_url = 0, ""
            async with asyncio.timeout(20):
                while not (port and api_url):
                    line = (await process.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError("the server exited before it served")
                    if match := re.search(port_line, line):
                        port = int(match.group(1))
                    if match := re.search(r"server API on (http://\S+)/api/", line):
                        api_url = match.group(1)
            yield cls(process, port, api_url)
        finally:
            if process.returncode is None:
                process.terminate()  # the process this function started, by its handle
                await process.wait()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_LISTEN_PORTS = range(10000, _ephemeral_low())
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to be started on it.

    It comes from below the kernel's ephemeral range: outgoing connections take their local ports
    from that range, so none can take this one between now and the moment the server binds it
    (with port 0 that happened: a Redis Cluster node in CI never came up). Never the same port
    twice in one process."""
    for _ in range(1000 if len(_LISTEN_PORTS) > 1000 else 0):
        port = random.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as probe:  # no room below the ephemeral range on this machine
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_server(folder: Path, port: int | None = None, replica_of: str | None = None) -> Iterator[str]:
    """Yield redis://127.0.0.1:PORT/0 for a server this function started and stops (a replica of
    `replica_of`, a redis:// URL, when given)."""
    if REDIS_SERVER is None:
        raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(1 if port else 3):  # a free port taken after all: another one
        chosen = port or free_port()
        process = _start_redis(folder, chosen, replica_of)
        try:
            _wait_for(chosen, b"PING\r\n", b"+PONG", 10, process)
            break
        except NodeExited:
            if port or attempt == 2:
                raise
        except BaseException:
            process.terminate()  # the process this function started, by its handle
            process.wait(timeout=10)
            raise
    try:
        yield f"redis://127.0.0.1:{chosen}/0"
    finally:
        process.terminate()  # the process this function started, by its handle
        process.wait(timeout=10)


def _start_redis(folder: Path, port: int, replica_of: str | None) -> subprocess.Popen[bytes]:
    assert REDIS_SERVER is not None
    replication = ["--replicaof", *replica_of.split("//")[1].split("/")[0].split(":")] if replica_of else []
    return subprocess.Popen(
        [
            REDIS_SERVER,
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(folder), *replication,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class RedisCluster:
    """A Redis Cluster this process started: its seed URL and each node's process by port."""

    url: str  # redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...
    processes: dict[int, subprocess.Popen[bytes]]
    folder: Path
    bus_ports: dict[int, int]

    def restart(self, port: int) -> None:
        """Start a stopped node again with its own data folder: it rejoins the cluster (a master
        that lost its slots in a failover comes back as a replica of the one that took them)."""
        self.processes[port].wait(timeout=10)
        self.processes[port] = _start_redis_node(self.folder, port, self.bus_ports[port])
        _wait_for(port, b"PING\r\n", b"+PONG", 10, self.processes[port])


def _start_redis_node(folder: Path, port: int, bus_port: int) -> subprocess.Popen[bytes]:
    assert REDIS_SERVER is not None
    node_folder = folder / str(port)
    node_folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            REDIS_SERVER,
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(node_folder), "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


class NodeExited(RuntimeError):
    """A redis-server we started exited before answering (its port was taken, most likely)."""


def _wait_for(
    port: int, command: bytes, expect: bytes, seconds: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll a node we started until `command` answers with `expect` in it (bounded); raise
    NodeExited at once if its `process` is gone."""
    deadline = time.monotonic() + seconds
    while True:
        if process is not None and process.poll() is not None:
            raise NodeExited(f"redis node {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
                connection.sendall(command)
                if expect in connection.recv(65536):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis node {port} did not answer {expect!r}")
        time.sleep(0.05)  # polling a process we started, bounded by the deadline


@contextlib.contextmanager
def redis_cluster(folder: Path, masters: int = 3, replicas: int = 1) -> Iterator[RedisCluster]:
    """A real Redis Cluster (`redis-cli --cluster create`): `masters` masters with `replicas`
    replicas each, on free ports (their bus ports too), stopped afterwards."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        raise FileNotFoundError("redis-server and redis-cli are needed (Debian package redis-server)")
    ports = [free_port() for _ in range(masters * (1 + replicas))]
    bus_ports = {port: free_port() for port in ports}
    processes = {port: _start_redis_node(folder, port, bus_ports[port]) for port in ports}
    try:
        for index, port in enumerate(list(ports)):
            for attempt in range(3):  # a node whose port was taken after all: new ports, same cluster
                try:
                    _wait_for(port, b"PING\r\n", b"+PONG", 10, processes[port])
                    break
                except NodeExited:
                    if attempt == 2:
                        raise
                    del processes[port], bus_ports[port]
                    port = ports[index] = free_port()
                    bus_ports[port] = free_port()
                    processes[port] = _start_redis_node(folder, port, bus_ports[port])
        create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports)]
        subprocess.run(
            [*create, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        for port in ports:
            _wait_for(port, b"CLUSTER INFO\r\n", b"cluster_state:ok", 30)
        url = "redis-cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
        yield RedisCluster(url, processes, folder, bus_ports)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()  # the processes this function started, by their handles
        for process in processes.values():
            process.wait(timeout=10)
