"""Shutdown is bounded step by step: a backend that never finishes closing (its server vanished
mid-reconnect) cannot hold the process past its drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from hubbub.server import _within


async def test_a_step_that_never_ends_is_left_behind(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.get_running_loop().time()
    await _within("a stuck close", asyncio.Event().wait(), 0.1)
    assert asyncio.get_running_loop().time() - started < 2
    assert "a stuck close did not finish within 0.1 s" in caplog.text


async def test_a_step_that_ignores_its_cancellation_is_left_behind_too(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()
    ended = asyncio.Event()

    async def stubborn() -> None:
        try:
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()
        finally:
            ended.set()

    await _within("a stubborn close", stubborn(), 0.1)
    assert "did not finish" in caplog.text and not ended.is_set()
    release.set()  # let it end, so the test leaves no task behind
    await asyncio.wait_for(ended.wait(), 5)


async def test_a_failing_step_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise OSError("gone")

    with caplog.at_level(logging.WARNING):
        await _within("a broken close", broken(), 1.0)
    assert "a broken close failed at shutdown: gone" in caplog.text
