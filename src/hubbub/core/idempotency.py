"""Publishes that a retry cannot repeat: the first result of a key is the answer for a window.

A publisher that timed out does not know whether its publish landed. Retrying with the same
`idempotency_key` is safe: the store (shared by every node with Redis) remembers the first
result per channel and key for `idempotency_window` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from hubbub import protocol
from hubbub.backends.base import IdempotencyStore
from hubbub.errors import CommandError, ErrorCode

MAX_KEY_BYTES = 128


class Idempotency:
    def __init__(self, store: IdempotencyStore, window: float) -> None:
        self._store = store
        self._window = window

    async def once(
        self, channel: str, key: str, publish: Callable[[], Awaitable[protocol.PublishResult]]
    ) -> protocol.PublishResult:
        """The first result published with `key` on `channel`, publishing only if there is none."""
        if not key or len(key.encode()) > MAX_KEY_BYTES:
            raise CommandError(ErrorCode.BAD_REQUEST, f"idempotency_key must be 1 to {MAX_KEY_BYTES} bytes")
        try:
            found = await self._store.claim(channel, key, self._window)
        except Exception as exc:  # the store is down: publishing now could publish twice
            raise CommandError(ErrorCode.INTERNAL, f"idempotency store unavailable: retry later ({exc})") from None
        if found == b"":
            raise CommandError(ErrorCode.IN_PROGRESS, "a publish with this idempotency_key is still running: retry")
        if found is not None:
            return msgspec.json.decode(found, type=protocol.PublishResult)
        try:
            result = await publish()
        except BaseException:
            await self._store.release(channel, key)
            raise
        # `{}` for a channel without history: never empty bytes, which mean "pending".
        await self._store.complete(channel, key, protocol.encode(result), self._window)
        return result
