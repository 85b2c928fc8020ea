"""A hubbub server in its own process, so its memory can be read from /proc while it is attacked."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    url: str
    api_url: str

    def memory_kib(self, field: str = "VmRSS") -> int:
        """VmRSS (now) or VmHWM (peak) of the server, in KiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.process.pid}/status")


SpawnServer = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def spawn_server() -> AsyncIterator[SpawnServer]:
    processes: list[asyncio.subprocess.Process] = []

    async def spawn(*flags: str) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
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
            *flags,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")},
        )
        processes.append(process)
        assert process.stdout is not None
        url = api_url = ""
        async with asyncio.timeout(15):
            while not (url and api_url):
                line = (await process.stdout.readline()).decode()
                assert line, "server exited before it served"
                if match := re.search(r"WebSocket on (ws://\S+)", line):
                    url = match.group(1)
                if match := re.search(r"server API on (http://\S+)/api/", line):
                    api_url = match.group(1)
        return ServerProcess(process, url, api_url)

    yield spawn
    for process in processes:
        if process.returncode is None:
            process.kill()  # only the servers this fixture started, by their handle
            await process.wait()
