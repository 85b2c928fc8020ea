"""A Node.js process the tests drive (third-party JS clients in tests/js): JSON commands, one per
line, on its stdin; `stop` asks it to exit and kills it if it does not."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class NodeProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            try:
                await self.send(op="exit")
                await asyncio.wait_for(self.process.wait(), 5)
            except (TimeoutError, ConnectionError):
                self.process.kill()  # the process this helper started, by its handle
                await self.process.wait()
