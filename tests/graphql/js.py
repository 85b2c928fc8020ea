"""graphql-ws (npm) as the tests run it: in Node.js through tests/js/graphql_ws_client.mjs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.node import NodeProcess

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE_CLIENT = JS_DIR / "graphql_ws_client.mjs"
UMD_BUNDLE = JS_DIR / "node_modules" / "graphql-ws" / "umd" / "graphql-ws.min.js"

Event = dict[str, Any]


def require_node_modules() -> None:
    assert (JS_DIR / "node_modules" / "graphql-ws").is_dir(), "run `make test` (it runs npm ci in tests/js)"


class NodeClient(NodeProcess):
    """One graphql-ws client in its own Node.js process: commands in, events out (JSON lines)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__(process)
        self.seen: list[Event] = []
        self.waiting: list[Event] = []  # read, not yet asked for

    @classmethod
    async def start(cls, url: str, token: str | None = None) -> NodeClient:
        require_node_modules()
        process = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_CLIENT),
            url,
            token or "",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=JS_DIR,
        )
        return cls(process)

    async def event(self, matches: Callable[[Event], object], timeout: float = 15.0) -> Event:
        """The first event not taken yet that matches (in arrival order; `seen` has them all)."""
        assert self.process.stdout is not None
        for index, waiting in enumerate(self.waiting):
            if matches(waiting):
                return self.waiting.pop(index)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise AssertionError(f"the Node.js client exited; it had said {self.seen}")
                    event = json.loads(line)
                    self.seen.append(event)
                    if matches(event):
                        return dict(event)
                    self.waiting.append(event)
        except TimeoutError:
            raise AssertionError(f"no such event within {timeout}s; the Node.js client said {self.seen}") from None


def next_of(operation_id: str) -> Callable[[Event], bool]:
    return lambda event: event.get("id") == operation_id and "next" in event
