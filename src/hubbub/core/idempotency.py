"""Calls that a retry cannot repeat: the first result of a key is the answer for a window.

A publisher that timed out does not know whether its publish (broadcast, batch, send) landed.
Retrying with the same `idempotency_key` is safe: the store (shared by every node with Redis)
remembers the first result per scope and key for `idempotency_window` seconds. A publish's scope
is its channel; broadcast, batch and send have a scope each of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from hubbub import protocol
from hubbub.backends.base import IdempotencyStore
from hubbub.errors import CommandError, ErrorCode

MAX_KEY_BYTES = 128
# A claim lives this long while its call runs (then the window): a node that dies mid-call blocks a
# retry with 115 for at most this long, not for the whole window.
PENDING_TTL = 30.0
log = logging.getLogger("hubbub.idempotency")
T = TypeVar("T")


class Idempotency:
    def __init__(self, store: IdempotencyStore, window: float) -> None:
        self._store = store
        self._window = window

    async def once(self, scope: str, key: str, work: Callable[[], Awaitable[T]], kind: type[T]) -> T:
        """The first result of `work` done with `key` in `scope` (a channel, or a call's own scope
        for broadcast, batch and send), doing it only if there is none."""
        if not key or len(key.encode()) > MAX_KEY_BYTES:
            raise CommandError(ErrorCode.BAD_REQUEST, f"idempotency_key must be 1 to {MAX_KEY_BYTES} bytes")
        try:
            found = await self._store.claim(scope, key, min(self._window, PENDING_TTL))
        except Exception as exc:  # the store is down: publishing now could publish twice
            raise CommandError(ErrorCode.INTERNAL, f"idempotency store unavailable: retry later ({exc})") from None
        if found == b"":
            raise CommandError(ErrorCode.IN_PROGRESS, "a call with this idempotency_key is still running: retry")
        if found is not None:
            return msgspec.json.decode(found, type=kind)
        try:
            result = await work()
        except BaseException:
            try:
                await self._store.release(scope, key)
            except Exception as exc:  # the key then answers 115 until PENDING_TTL: a retry waits, never repeats
                log.warning("releasing idempotency key %r failed: %s", key, exc)
            raise
        try:  # never empty bytes (which mean "pending"): `{}` at least
            await self._store.complete(scope, key, protocol.encode(result), self._window)
        except Exception as exc:  # done, but not remembered: a retry gets 115 until PENDING_TTL
            log.warning("storing the result of idempotency key %r failed: %s", key, exc)
        return result
