"""A hubbub server in its own process, so its memory can be read from /proc while it is attacked."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench.process import ServerProcess

SpawnServer = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def spawn_server() -> AsyncIterator[SpawnServer]:
    """Start `hubbub serve FLAGS...` (not pinned to a core); stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def spawn(*flags: str) -> ServerProcess:
            return await stack.enter_async_context(ServerProcess.start(None, *flags))

        yield spawn
