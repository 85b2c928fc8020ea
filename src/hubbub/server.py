"""Wires settings, backends, hub and transports together; the only module that imports all.

server = Server(settings)
await server.start()        # binds both ports; `server.started` is set
await server.publish("news", {"text": "hi"})   # the server API, in-process
...
await server.close()        # drain: stop accepting, close with 1001, flush history

It runs in whatever event loop starts it: an application's own (FastAPI lifespan, aiohttp
cleanup_ctx) as well as `hubbub serve`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from msgspec import Raw

from hubbub import protocol
from hubbub.backends.base import Broker, HistoryStore, IdempotencyStore, PresenceStore
from hubbub.backends.memory import MemoryBroker, MemoryHistory, MemoryIdempotency, MemoryPresence
from hubbub.backends.sqlite import SqliteHistory
from hubbub.config import Settings
from hubbub.core.auth import TokenVerifier
from hubbub.core.hooks import HookRunner, Hooks
from hubbub.core.hub import Hub
from hubbub.core.idempotency import Idempotency
from hubbub.core.server_api import NodeInfo, ServerApi
from hubbub.errors import CommandError, ConfigError, DisconnectCode, ErrorCode
from hubbub.graphql.schema import as_graphql_schema, load_schema
from hubbub.mounts.bridge import MountContext
from hubbub.transports.admin import AdminFeed
from hubbub.transports.graphql_ws import GraphQLService, service_for
from hubbub.transports.hook_proxy import has_hook_urls, proxies
from hubbub.transports.http_api import HttpApi
from hubbub.transports.websocket import WEBSOCKET_PATH, WebSocketEndpoint

__all__ = ["Server"]

log = logging.getLogger("hubbub.server")


class Server:
    """One hubbub node: public WebSocket port plus internal API port."""

    def __init__(self, settings: Settings, *, hooks: Hooks | None = None, graphql_schema: Any = None) -> None:
        """`hooks`: in-process application hooks; for a hook both here and as a *_hook_url setting,
        this one is used. `graphql_schema`: a GraphQL schema (graphql-core, Strawberry or Ariadne)
        served on `graphql_path`, instead of the `graphql_schema` setting's import path."""
        if settings.dev and not settings.token_secret:  # dev tokens need a key: one for this run
            settings = dataclasses.replace(settings, token_secret=secrets.token_urlsafe(32))
        self.settings = settings
        self.hooks = hooks or Hooks()
        self._graphql_schema = graphql_schema
        self._hook_client: aiohttp.ClientSession | None = None
        self.started = asyncio.Event()
        self.draining = False
        self.port: int | None = None
        self.api_port: int | None = None
        self.hub: Hub | None = None
        self._api: ServerApi | None = None
        self._mount: MountContext | None = None
        self._delivery_watch: asyncio.Task[None] | None = None
        self._history: HistoryStore | None = None
        self._idempotency: IdempotencyStore | None = None
        self._endpoint: WebSocketEndpoint | None = None
        self.admin_feed: AdminFeed | None = None
        self._api_runner: web.AppRunner | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The WebSocket URL on hubbub's own public port (none with listen_public off: use the mount's)."""
        if self.port is None:
            raise RuntimeError("hubbub's public port is off (listen_public = false): clients use the app's mount")
        scheme = "wss" if self.settings.tls_cert else "ws"
        return f"{scheme}://{_url_host(self.settings.host)}:{self.port}{WEBSOCKET_PATH}"

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(self.settings.api_host)}:{self.api_port}"

    async def _open_backends(self) -> tuple[Broker, HistoryStore, PresenceStore, IdempotencyStore]:
        settings = self.settings
        broker: Broker
        history: HistoryStore
        presence: PresenceStore
        idempotency: IdempotencyStore
        if settings.broker == "memory":
            broker, presence = MemoryBroker(), MemoryPresence()
            history = (
                MemoryHistory()
                if settings.history_path is None
                else SqliteHistory(settings.history_path, commit_interval=settings.history_commit_interval)
            )
            idempotency = MemoryIdempotency(settings.idempotency_max_keys)
        else:
            from hubbub.backends.redis import (
                Heartbeat,
                RedisIdempotency,
                RedisOptions,
                ReplicaWait,
                backends_from_url,
            )

            options = RedisOptions(
                max_connections=settings.redis_max_connections,
                pool_timeout=settings.redis_pool_timeout,
                connect_timeout=settings.redis_connect_timeout,
                socket_timeout=settings.redis_socket_timeout,
                health_check_interval=settings.redis_health_check_interval,
            )
            heartbeat = (
                Heartbeat(settings.broker_heartbeat_interval, settings.broker_heartbeat_timeout)
                if settings.broker_heartbeat_interval is not None
                else None
            )
            wait = (
                ReplicaWait(settings.redis_wait_replicas, settings.redis_wait_timeout)
                if settings.redis_wait_replicas
                else None
            )
            broker, history, presence = backends_from_url(
                settings.broker, settings.redis_prefix, settings.presence_ttl, options, heartbeat, wait
            )
            idempotency = RedisIdempotency(settings.broker, settings.redis_prefix, options)
        for backend in (history, broker, presence, idempotency):
            await backend.open()
        return broker, history, presence, idempotency

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        broker, self._history, presence, self._idempotency = await self._open_backends()
        self.hub = Hub(settings, broker, self._history, presence, call_soon=loop.call_soon)
        if settings.broker != "memory" and settings.broker_heartbeat_interval is not None:
            self._delivery_watch = loop.create_task(self.hub.watch_delivery(settings.broker_heartbeat_interval))
        verifier = TokenVerifier.from_settings(settings)
        hooks = self.hooks
        if has_hook_urls(settings):
            self._hook_client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=settings.hook_concurrency), raise_for_status=False
            )
            hooks = hooks.merged(proxies(settings, self._hook_client))
        runner = HookRunner(
            hooks,
            self.hub.stats,
            timeout=settings.hook_timeout,
            concurrency=settings.hook_concurrency,
            max_pending_notifications=settings.hook_notify_max_pending,
        )
        self._api = ServerApi(
            self.hub,
            Idempotency(self._idempotency, settings.idempotency_window),
            development_mode=settings.development_mode and hooks.connect is None,
        )
        self._endpoint = WebSocketEndpoint(self.hub, verifier, lambda: self.draining, runner, self._graphql_service())
        self._mount = MountContext(
            hub=self.hub,
            verifier=verifier,
            hooks=runner,
            admission=self._endpoint.admission,
            forwarded_headers=frozenset(self._endpoint.forwarded_headers),
            is_draining=lambda: self.draining,
        )
        if settings.listen_public:
            ws_server = await self._endpoint.start(settings.host, settings.port, ssl=_tls_context(settings))
            self.port = ws_server.sockets[0].getsockname()[1]
        self.admin_feed = AdminFeed(self.hub, interval=settings.admin_interval)
        self.admin_feed.start()
        self._api_runner = web.AppRunner(
            HttpApi(self._api, lambda: self.draining, admin_feed=self.admin_feed).application(),
            access_log=None,
            handle_signals=False,
        )
        await self._api_runner.setup()
        site = web.TCPSite(
            self._api_runner, settings.api_host, settings.api_port, reuse_port=settings.reuse_port or None
        )
        await site.start()
        self.api_port = self._api_runner.addresses[0][1]
        self.started.set()

    async def close(self) -> None:
        """Drain within `shutdown_timeout`: refuse new clients, close every WebSocket with 1001."""
        if self._closed:
            return
        self._closed = True
        self.draining = True
        deadline = time.monotonic() + self.settings.shutdown_timeout
        if self._endpoint is not None:
            self._endpoint.stop_keepalive()
        if self._endpoint is not None and self._endpoint.server is not None:
            ws_server = self._endpoint.server
            ws_server.close(DisconnectCode.GOING_AWAY, "server shutting down")
            try:
                await asyncio.wait_for(ws_server.wait_closed(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("connections still open after %.1fs: aborting them", self.settings.shutdown_timeout)
                for connection in ws_server.connections:
                    connection.abort()
        if self.hub is not None and self._mount is not None and self._mount.sinks:
            # Clients of a mount (ASGI, aiohttp): the host's connections, closed through their sessions.
            self.hub.close_all(DisconnectCode.GOING_AWAY, "server shutting down")
            waiting = [sink.closed.wait() for sink in list(self._mount.sinks)]
            try:
                await asyncio.wait_for(asyncio.gather(*waiting), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("mounted connections still open after %.1fs", self.settings.shutdown_timeout)
        if self.hub is not None:  # disconnect and unsubscribe notifications still on their way
            try:
                await asyncio.wait_for(self.hub.wait_spawned(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("background work (hook notifications) still running at shutdown: dropped")
        if self._hook_client is not None:
            await self._hook_client.close()
        # Each step bounded: a backend whose server vanished mid-reconnect must not hold the
        # process past its drain (seen once in CI: a Redis gone for good during a resubscribe).
        if self.admin_feed is not None:
            await _within("the admin feed's stop", self.admin_feed.stop(), self._step_limit())
        if self._api_runner is not None:
            await _within("the server API's shutdown", self._api_runner.cleanup(), self._step_limit())
        if self._delivery_watch is not None:
            self._delivery_watch.cancel()
            await _within("the delivery check", asyncio.gather(self._delivery_watch, return_exceptions=True), 1.0)
        if self.hub is not None:
            await _within("closing the broker", self.hub.broker.close(), self._step_limit())
            await _within("closing the presence store", self.hub.presence_store.close(), self._step_limit())
        if self._history is not None:
            await _within("closing history", self._history.close(), self._step_limit())
        if self._idempotency is not None:
            await _within("closing the idempotency store", self._idempotency.close(), self._step_limit())

    def _graphql_service(self) -> GraphQLService | None:
        """The GraphQL endpoint's schema and caches, when a schema is given (object or setting)."""
        schema = self._graphql_schema
        if schema is None and self.settings.graphql_schema:
            schema = load_schema(self.settings.graphql_schema)
        if schema is None:
            return None
        assert self.hub is not None, "made in start()"
        return service_for(as_graphql_schema(schema), self.hub, self.publish)

    def _step_limit(self) -> float:
        """How long one shutdown step may take (history's last writes included)."""
        return max(5.0, self.settings.shutdown_timeout)

    def mount_context(self) -> MountContext | None:
        """What the ASGI and aiohttp mounts serve clients with; None until started, and once closed."""
        return None if self._closed else self._mount

    # ---- the server API, in-process (same semantics as /api/*; data is any JSON-able value) ----

    @property
    def api(self) -> ServerApi:
        if self._api is None:
            raise RuntimeError("the server is not started: await server.start() first")
        return self._api

    async def publish(
        self, channel: str, data: Any, *, info: Any = None, idempotency_key: str | None = None
    ) -> protocol.PublishResult:
        """Publish `data` to `channel`; returns once it is in history (offset and epoch)."""
        publisher = _json(info) if info is not None else None
        return await self.api.publish(channel, _json(data), info=publisher, idempotency_key=idempotency_key)

    async def broadcast(
        self, channels: list[str], data: Any, *, idempotency_key: str | None = None
    ) -> list[protocol.PublishResult]:
        return await self.api.broadcast(channels, _json(data), idempotency_key=idempotency_key)

    async def batch(
        self, publications: list[tuple[str, Any]], *, idempotency_key: str | None = None
    ) -> list[protocol.PublishResult]:
        """Many publications, each to its own channel (a feed's tick): one history and broker operation."""
        checked = [(channel, _json(data)) for channel, data in publications]
        return await self.api.batch(checked, idempotency_key=idempotency_key)

    async def send(self, user: str, data: Any, *, idempotency_key: str | None = None) -> None:
        """A message to every connection of `user` on every node (kept nowhere)."""
        await self.api.send(user, _json(data), idempotency_key=idempotency_key)

    async def disconnect(self, user: str, *, reconnect: bool = False) -> int:
        """Close `user`'s connections on every node (3503, or 3011 with `reconnect`)."""
        return await self.api.disconnect(user, reconnect=reconnect)

    async def subscribe(self, user: str, channel: str) -> int:
        """Subscribe `user`'s connections on every node to `channel` (server-side)."""
        return await self.api.subscribe(user, channel)

    async def unsubscribe(self, user: str, channel: str) -> int:
        return await self.api.unsubscribe(user, channel)

    async def history(
        self,
        channel: str,
        *,
        since_offset: int | None = None,
        epoch: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> protocol.HistoryResult:
        return await self.api.history(channel, since_offset=since_offset, epoch=epoch, limit=limit, reverse=reverse)

    async def presence(self, channel: str) -> protocol.PresenceResult:
        return await self.api.presence(channel)

    def info(self) -> NodeInfo:
        return self.api.info()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _within(what: str, step: Awaitable[Any], seconds: float) -> None:
    """Run one shutdown step for at most `seconds`; past that, cancel it and go on (logged).
    `asyncio.wait`, not `wait_for`: a step that ignores its cancellation cannot hold us either."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("%s did not finish within %.1f s at shutdown: left behind", what, seconds)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s failed at shutdown: %s", what, task.exception())


def _json(value: Any) -> Raw:
    """Any JSON-able value as JSON (a Raw is taken as JSON already)."""
    if isinstance(value, Raw):
        return protocol.validate_json(bytes(value))
    try:
        return Raw(protocol.encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, f"data is not JSON-able: {exc}") from None


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS 1.2 or newer with the configured certificate, or None for plain ws://."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"settings 'tls_cert'/'tls_key': cannot load the certificate: {exc}") from None
    return context


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
