"""Wires settings, backends, hub and transports together; the only module that imports all.

server = Server(settings)
await server.start()        # binds both ports; `server.started` is set
...
await server.close()        # drain: stop accepting, close with 1001, flush history
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import ssl
import time

from aiohttp import web

from hubbub.backends.base import Broker, HistoryStore, PresenceStore
from hubbub.backends.memory import MemoryBroker, MemoryHistory, MemoryPresence
from hubbub.backends.sqlite import SqliteHistory
from hubbub.config import Settings
from hubbub.core.auth import TokenVerifier
from hubbub.core.hub import Hub
from hubbub.errors import ConfigError, DisconnectCode
from hubbub.transports.admin import AdminFeed
from hubbub.transports.http_api import HttpApi
from hubbub.transports.websocket import WEBSOCKET_PATH, WebSocketEndpoint

__all__ = ["Server"]

log = logging.getLogger("hubbub.server")


class Server:
    """One hubbub node: public WebSocket port plus internal API port."""

    def __init__(self, settings: Settings) -> None:
        if settings.dev and not settings.token_secret:  # dev tokens need a key: one for this run
            settings = dataclasses.replace(settings, token_secret=secrets.token_urlsafe(32))
        self.settings = settings
        self.started = asyncio.Event()
        self.draining = False
        self.port: int | None = None
        self.api_port: int | None = None
        self.hub: Hub | None = None
        self._history: HistoryStore | None = None
        self._endpoint: WebSocketEndpoint | None = None
        self.admin_feed: AdminFeed | None = None
        self._api_runner: web.AppRunner | None = None
        self._closed = False

    @property
    def url(self) -> str:
        scheme = "wss" if self.settings.tls_cert else "ws"
        return f"{scheme}://{_url_host(self.settings.host)}:{self.port}{WEBSOCKET_PATH}"

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(self.settings.api_host)}:{self.api_port}"

    async def _open_backends(self) -> tuple[Broker, HistoryStore, PresenceStore]:
        settings = self.settings
        broker: Broker
        history: HistoryStore
        presence: PresenceStore
        if settings.broker == "memory":
            broker, presence = MemoryBroker(), MemoryPresence()
            history = MemoryHistory() if settings.history_path is None else SqliteHistory(settings.history_path)
        else:
            from hubbub.backends.redis import RedisOptions, backends_from_url

            options = RedisOptions(
                max_connections=settings.redis_max_connections,
                pool_timeout=settings.redis_pool_timeout,
                connect_timeout=settings.redis_connect_timeout,
                socket_timeout=settings.redis_socket_timeout,
                health_check_interval=settings.redis_health_check_interval,
            )
            broker, history, presence = backends_from_url(
                settings.broker, settings.redis_prefix, settings.presence_ttl, options
            )
        for backend in (history, broker, presence):
            await backend.open()
        return broker, history, presence

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        broker, self._history, presence = await self._open_backends()
        self.hub = Hub(settings, broker, self._history, presence, call_soon=loop.call_soon)
        verifier = TokenVerifier.from_settings(settings)
        self._endpoint = WebSocketEndpoint(self.hub, verifier, lambda: self.draining)
        ws_server = await self._endpoint.start(settings.host, settings.port, ssl=_tls_context(settings))
        self.port = ws_server.sockets[0].getsockname()[1]
        self.admin_feed = AdminFeed(self.hub, interval=settings.admin_interval)
        self.admin_feed.start()
        self._api_runner = web.AppRunner(
            HttpApi(self.hub, lambda: self.draining, admin_feed=self.admin_feed).application(),
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
        if self.admin_feed is not None:
            await self.admin_feed.stop()
        if self._api_runner is not None:
            await self._api_runner.cleanup()
        if self.hub is not None:
            await self.hub.broker.close()
            await self.hub.presence_store.close()
        if self._history is not None:
            await self._history.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


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
