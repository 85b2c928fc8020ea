"""A real hubbub server for applications' own tests.

In a conftest.py:

    pytest_plugins = ["hubbub.testing"]

    def test_order_page(hubbub_server):
        publisher = hubbub.Publisher(hubbub_server.api_url)
        ...

The server runs in a thread of its own with its own event loop, so the fixture works in plain
(sync) tests, Django's and Celery's included, and beside any async test framework. It listens
on free loopback ports with history in memory and is drained after the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from hubbub.config import Settings
from hubbub.core.hooks import Hooks
from hubbub.server import Server

__all__ = ["ServerThread", "hubbub_server"]

START_TIMEOUT = 30.0


class ServerThread:
    """A Server in a background thread: `start()` returns once both ports listen."""

    def __init__(self, settings: Settings | None = None, *, hooks: Hooks | None = None, **overrides: Any) -> None:
        values: dict[str, Any] = {"port": 0, "api_port": 0, "history_path": None}
        values.update(overrides)
        self.settings = settings or Settings(**values)
        self._hooks = hooks
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubbub-test-server", daemon=True)
        self.server: Server | None = None

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        assert self.server is not None, "start() first"
        return self.server.url

    @property
    def api_url(self) -> str:
        """The server API's base URL (for hubbub.Publisher)."""
        assert self.server is not None, "start() first"
        return self.server.api_url

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError(f"hubbub did not start within {START_TIMEOUT}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.server = Server(self.settings, hooks=self._hooks)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def hubbub_server() -> Iterator[ServerThread]:
    """A running hubbub (development mode, memory history) on free loopback ports."""
    with ServerThread() as server:
        yield server
