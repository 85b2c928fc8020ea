"""What one connection asks of the application: hook events built, answers checked.

The session decides when (connect without a token, a subscribe or publish in a namespace a hook
covers, an rpc, a connection or subscription that ends); this module builds each event, asks
through the HookRunner (bounded, timed, counted) and turns the answer into what the session
uses: credentials, a subscriber's channel info, the data to publish, an rpc reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import Raw

from hubbub import protocol
from hubbub.core import hooks as app
from hubbub.core.auth import MAX_USER_BYTES, Credentials
from hubbub.core.hooks import HookRunner
from hubbub.core.hub import Hub
from hubbub.core.stats import Stats
from hubbub.errors import CommandError, ErrorCode

log = logging.getLogger("hubbub.application")

MAX_RPC_METHOD_BYTES = 255
NOTIFY_BACKOFF = 0.5  # seconds before a notification's first retry; doubles each time

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a connection comes from, as the connect hook sees it."""

    transport: str = "websocket"
    remote: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # only those in hook_forward_headers


def application_for(
    runner: HookRunner | None, hub: Hub, peer: Peer, forwarded_headers: AbstractSet[str]
) -> Application | None:
    """A connection's Application, or None when the app configured no hook (nothing to ask). The
    peer's headers (names lower-cased) are cut to the allow-list here, once, for every transport."""
    if runner is None or not runner.has_hooks:
        return None
    headers = {name: value for name, value in peer.headers.items() if name in forwarded_headers}
    peer = Peer(peer.transport, peer.remote, headers)
    attempts = hub.settings.hook_notify_attempts
    return Application(runner, hub.stats, peer, notify_attempts=attempts, spawn=hub.spawn)


class Application:
    """The application's hooks as one connection uses them."""

    __slots__ = ("_hooks", "_notify_attempts", "_peer", "_runner", "_spawn", "_stats")

    def __init__(self, runner: HookRunner, stats: Stats, peer: Peer, *, notify_attempts: int, spawn: Spawn) -> None:
        self._runner = runner
        self._hooks = runner.hooks
        self._stats = stats
        self._peer = peer
        self._notify_attempts = notify_attempts
        self._spawn = spawn

    @property
    def decides_connect(self) -> bool:
        return self._hooks.connect is not None

    @property
    def refreshes(self) -> bool:
        return self._hooks.refresh is not None

    def decides(self, action: str, channel: str) -> bool:
        """Whether the subscribe or publish hook decides for `channel` (else the namespace rules)."""
        hook = getattr(self._hooks, action)
        return hook is not None and app.applies(hook, channel)

    async def connect(self, client: str, request: protocol.ConnectRequest) -> Credentials:
        assert self._hooks.connect is not None
        peer = self._peer
        event = app.ConnectEvent(
            client=client,
            transport=peer.transport,
            remote=peer.remote,
            headers=peer.headers,
            data=_decoded(request.data),
            token=request.token,
        )
        decision = await self._runner.call("connect", self._hooks.connect, event, app.ConnectDecision)
        user = decision.user
        if not isinstance(user, str) or len(user.encode()) > MAX_USER_BYTES:
            self._stats.hook_errors[("connect", "bad_answer")] += 1
            raise CommandError(ErrorCode.APPLICATION_UNAVAILABLE, "the application's connect hook gave a bad user id")
        return Credentials(
            user=user, info=decision.info, expires_at=decision.expires_at, channels=tuple(decision.channels)
        )

    async def refresh(self, client: str, credentials: Credentials) -> Credentials:
        """The credentials extended (new expiry, new or kept info); raises CommandError."""
        assert self._hooks.refresh is not None
        event = app.RefreshEvent(client=client, user=credentials.user, info=credentials.info)
        decision = await self._runner.call("refresh", self._hooks.refresh, event, app.RefreshDecision)
        info = decision.info if decision.info is not None else credentials.info
        return Credentials(credentials.user, info, expires_at=decision.expires_at, channels=credentials.channels)

    async def subscribe(self, client: str, credentials: Credentials, channel: str, data: Raw) -> Raw | None:
        """Allowed (or raises): the subscriber's `chan_info` in this channel, if the app gave one."""
        assert self._hooks.subscribe is not None
        event = app.SubscribeEvent(
            client=client, user=credentials.user, info=credentials.info, channel=channel, data=_decoded(data)
        )
        expected = (app.SubscribeDecision, type(None))
        decision = await self._runner.call("subscribe", self._hooks.subscribe, event, expected)
        if decision is None or decision.info is None:
            return None
        return self._json("subscribe", decision.info)

    async def publish(self, client: str, credentials: Credentials, channel: str, data: Raw) -> Raw:
        """Allowed (or raises): the data to publish, the client's or the app's replacement."""
        assert self._hooks.publish is not None
        event = app.PublishEvent(
            client=client, user=credentials.user, info=credentials.info, channel=channel, data=_decoded(data)
        )
        decision = await self._runner.call("publish", self._hooks.publish, event, (app.PublishDecision, type(None)))
        if decision is None or decision.data is app.KEEP:
            return data
        return self._json("publish", decision.data)

    async def rpc(self, client: str, credentials: Credentials, request: protocol.RpcRequest) -> Raw:
        hook = self._hooks.rpc
        if hook is None:
            raise CommandError(ErrorCode.NOT_AVAILABLE, "rpc is not available: the application has no rpc hook")
        if not request.method or len(request.method.encode()) > MAX_RPC_METHOD_BYTES:
            raise CommandError(ErrorCode.BAD_REQUEST, f"rpc needs a method name of 1 to {MAX_RPC_METHOD_BYTES} bytes")
        event = app.RpcEvent(
            client=client,
            user=credentials.user,
            info=credentials.info,
            method=request.method,
            data=_decoded(request.data),
        )
        return self._json("rpc", await self._runner.call("rpc", hook, event, None))

    def closed(self, client: str, user: str, channels: list[str], code: int, reason: str) -> None:
        """A connection closed: an unsubscribe notification per channel, then a disconnect one."""
        for channel in channels:
            self.unsubscribed(client, user, channel, "disconnect")
        if self._hooks.disconnect is not None:
            event = app.DisconnectEvent(client=client, user=user, code=code, reason=reason)
            self._notify("disconnect", self._hooks.disconnect, event)

    def unsubscribed(self, client: str, user: str, channel: str, reason: str) -> None:
        if self._hooks.unsubscribe is not None:
            event = app.UnsubscribeEvent(client=client, user=user, channel=channel, reason=reason)
            self._notify("unsubscribe", self._hooks.unsubscribe, event)

    def _notify(self, name: str, hook: app.Hook[Any, None], event: Any) -> None:
        work = self._runner.notification(name, hook, event, attempts=self._notify_attempts, backoff=NOTIFY_BACKOFF)
        if work is not None:
            self._spawn(work, f"{name} notification of {event.client}")

    def _json(self, name: str, value: Any) -> Raw:
        """What a hook answered, as JSON for the wire; not JSON-able is a failed hook (114)."""
        try:
            if isinstance(value, Raw):
                return protocol.validate_json(bytes(value))
            return Raw(protocol.encode(value))
        except (TypeError, msgspec.EncodeError, CommandError):
            self._stats.hook_errors[(name, "bad_answer")] += 1
            log.warning("%s hook answered a value that is not JSON: %.80r", name, value)
            raise CommandError(ErrorCode.APPLICATION_UNAVAILABLE, f"the application's {name} hook failed") from None


def _decoded(data: Raw) -> Any:
    """Raw JSON from the client as Python values, for a hook."""
    return msgspec.json.decode(data)
