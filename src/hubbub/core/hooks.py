"""Application hooks: the app decides who connects, what may be subscribed and published, and
answers RPCs; it hears of disconnects and unsubscribes.

Each hook is a callable taking one event: a plain function (run in a worker thread, so Django
ORM code may block) or a coroutine function (run in the loop). An HTTP proxy to the app's
backend (transports/hook_proxy.py) is just another such callable. Every call is bounded: a
timeout, a cap on calls in flight, and a failure (timeout, exception, garbage) becomes a
temporary error for the client (114), is logged and counted, and never crashes the session.
A hook refuses by raising `hubbub.Refuse(code, message)`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from hubbub.core.stats import Stats
from hubbub.errors import CommandError, ErrorCode

__all__ = [
    "ConnectDecision",
    "ConnectEvent",
    "DisconnectEvent",
    "HookRunner",
    "Hooks",
    "PublishDecision",
    "PublishEvent",
    "RefreshDecision",
    "RefreshEvent",
    "RpcEvent",
    "SubscribeDecision",
    "SubscribeEvent",
    "UnsubscribeEvent",
]

log = logging.getLogger("hubbub.hooks")

E = TypeVar("E")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ConnectEvent:
    """A client sent `connect` (without a token, or always with `connect_hook_always`)."""

    client: str  # the connection id the server gave it
    transport: str  # "websocket"
    remote: str  # the peer's IP address
    headers: Mapping[str, str]  # the upgrade request's headers named in hook_forward_headers
    data: Any = None  # the connect command's `data` (any JSON), as the client sent it
    token: str | None = None  # the token the client sent, if any (with connect_hook_always)


@dataclass(frozen=True, slots=True)
class ConnectDecision:
    """Who the connection is. `user` "" means anonymous; `expires_at` (unix time) makes the server
    call the refresh hook before then; `channels` are subscribed for the client (server-side)."""

    user: str = ""
    info: Any = None
    expires_at: float | None = None
    channels: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """A hook-authenticated connection nears its `expires_at`."""

    client: str
    user: str
    info: Any


@dataclass(frozen=True, slots=True)
class RefreshDecision:
    expires_at: float | None = None  # None: never expires again
    info: Any = None  # None: keep the current info


@dataclass(frozen=True, slots=True)
class SubscribeEvent:
    client: str
    user: str
    info: Any
    channel: str
    data: Any = None  # the subscribe command's `data`


@dataclass(frozen=True, slots=True)
class SubscribeDecision:
    info: Any = None  # shown as this subscriber's `chan_info` in presence, join/leave and its publications


@dataclass(frozen=True, slots=True)
class PublishEvent:
    client: str
    user: str
    info: Any
    channel: str
    data: Any


KEEP: Final = object()  # PublishDecision.data's default: publish the data as the client sent it


@dataclass(frozen=True, slots=True)
class PublishDecision:
    """Allow; with `data`, publish that instead (validated, enriched, stored under the app's id)."""

    data: Any = KEEP


@dataclass(frozen=True, slots=True)
class RpcEvent:
    client: str
    user: str
    info: Any
    method: str
    data: Any


@dataclass(frozen=True, slots=True)
class DisconnectEvent:
    """A connection closed. At least once from a live node: `id` is the same on every retry."""

    client: str
    user: str
    code: int
    reason: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True, slots=True)
class UnsubscribeEvent:
    """A subscription ended (the client unsubscribed, was unsubscribed, or disconnected)."""

    client: str
    user: str
    channel: str
    reason: str  # "client" | "server" | "disconnect" | "token expired"
    id: str = field(default_factory=lambda: secrets.token_hex(8))


Hook = Callable[[E], R | Awaitable[R]]


@dataclass(frozen=True)
class Hooks:
    """The application's hooks; any may be None (then hubbub's own rules decide)."""

    connect: Hook[ConnectEvent, ConnectDecision] | None = None
    refresh: Hook[RefreshEvent, RefreshDecision] | None = None
    subscribe: Hook[SubscribeEvent, SubscribeDecision | None] | None = None
    publish: Hook[PublishEvent, PublishDecision | None] | None = None
    rpc: Hook[RpcEvent, Any] | None = None
    disconnect: Hook[DisconnectEvent, None] | None = None
    unsubscribe: Hook[UnsubscribeEvent, None] | None = None

    @property
    def any(self) -> bool:
        """Whether any hook is set (HookRunner reads it once: the hooks never change)."""
        return any(getattr(self, name) is not None for name in HOOK_NAMES)

    def merged(self, other: Hooks) -> Hooks:
        """These hooks, with `other`'s where these have none (in-process beside HTTP proxies)."""
        return Hooks(**{name: getattr(self, name) or getattr(other, name) for name in HOOK_NAMES})


HOOK_NAMES: Final = ("connect", "refresh", "subscribe", "publish", "rpc", "disconnect", "unsubscribe")


class BadAnswer(Exception):
    """The hook answered something that is not what it must answer (a proxy raises it too)."""


class HookRunner:
    """Calls hooks with a timeout and a cap on calls in flight; counts and times every call."""

    def __init__(
        self,
        hooks: Hooks,
        stats: Stats,
        *,
        timeout: float | None,
        concurrency: int,
        max_pending_notifications: int = 10_000,
    ) -> None:
        self.hooks = hooks
        self.has_hooks = hooks.any  # asked once per connection (application_for)
        self._stats = stats
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._max_pending = max_pending_notifications
        self.pending_notifications = 0  # notifications waiting, in flight or between retries

    async def call(self, name: str, hook: Hook[E, R], event: E, expect: type | tuple[type, ...] | None) -> R:
        """The hook's answer, checked against `expect`; a Refuse passes through to the client.

        Anything else that goes wrong is a temporary 114 error: the app may be back in a moment.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._slots:
                    result = await _invoke(hook, event)
            if expect is not None and not isinstance(result, expect):
                raise BadAnswer(f"answered {type(result).__name__}, not {_names(expect)}")
            return result  # type: ignore[no-any-return]
        except CommandError:  # a Refuse (or a proxy's decoded refusal): the app's word
            raise
        except TimeoutError:
            self._failed(name, "timeout", f"no answer within {self._timeout}s")
        except BadAnswer as exc:
            self._failed(name, "bad_answer", str(exc))
        except Exception as exc:
            self._failed(name, "error", f"{type(exc).__name__}: {exc}", exc_info=exc)
        finally:
            self._stats.observe_hook(name, time.perf_counter() - started)
        raise AssertionError("unreachable")  # pragma: no cover - _failed raises

    def _failed(self, name: str, kind: str, detail: str, exc_info: BaseException | None = None) -> None:
        self._stats.hook_errors[(name, kind)] += 1
        log.warning("%s hook failed (%s): %s", name, kind, detail, exc_info=exc_info)
        raise CommandError(ErrorCode.APPLICATION_UNAVAILABLE, f"the application's {name} hook failed: try again")

    def notification(
        self, name: str, hook: Hook[E, None], event: E, *, attempts: int, backoff: float
    ) -> Coroutine[Any, Any, None] | None:
        """The work of delivering a notification (disconnect, unsubscribe), retried up to `attempts`;
        None when `max_pending_notifications` are pending already (an app down during a reconnect
        storm must not grow memory without bound): that one is dropped and counted as overflow."""
        if self.pending_notifications >= self._max_pending:
            self._stats.hook_errors[(name, "overflow")] += 1
            return None
        self.pending_notifications += 1
        return self._notify(name, hook, event, attempts, backoff)

    async def _notify(self, name: str, hook: Hook[E, None], event: E, attempts: int, backoff: float) -> None:
        try:
            for attempt in range(attempts):
                try:
                    await self.call(name, hook, event, None)
                    return
                except CommandError:
                    if attempt + 1 < attempts:
                        await asyncio.sleep(backoff * 2**attempt)  # backoff between retries, not a synchronisation
            self._stats.hook_errors[(name, "given_up")] += 1
            log.error("%s notification %s given up after %d attempts", name, getattr(event, "id", "?"), attempts)
        finally:
            self.pending_notifications -= 1


def applies(hook: object, channel: str) -> bool:
    """Whether a subscribe or publish hook decides for `channel` (an HTTP proxy may be off in
    some namespaces; an in-process callable decides everywhere)."""
    check = getattr(hook, "applies", None)
    return True if check is None else bool(check(channel))


async def _invoke(hook: Callable[[Any], Any], event: Any) -> Any:
    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(getattr(hook, "__call__", None)):  # noqa: B004
        return await hook(event)
    result = await asyncio.to_thread(hook, event)  # sync app code may block (an ORM query)
    return await result if inspect.isawaitable(result) else result


def _names(expect: type | tuple[type, ...]) -> str:
    kinds = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(kind.__name__ for kind in kinds)
