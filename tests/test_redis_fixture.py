"""The Redis fixtures themselves: their ports cannot be taken by outgoing connections, and a
redis-server that cannot bind its port is reported at once instead of after a 10 s wait."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from bench.process import NodeExited, free_port, redis_server
from tests.redis_server import require_redis_server


def test_free_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low < 11000:
        pytest.skip(f"SKIPPED LOUDLY: the ephemeral range starts at {low}; free_port falls back to port 0 here")
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)


def test_a_redis_server_whose_port_is_taken_is_reported_at_once(tmp_path: Path) -> None:
    require_redis_server()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port()))
        holder.listen()  # something else listens there, so redis-server exits on start
        started = time.monotonic()
        with pytest.raises(NodeExited), redis_server(tmp_path, holder.getsockname()[1]):
            pass
        assert time.monotonic() - started < 5  # the wait would otherwise last its full 10 s
