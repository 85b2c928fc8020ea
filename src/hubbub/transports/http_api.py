"""The server API on the internal port (aiohttp): publish, history, presence, disconnect.

Same Hub methods as the WebSocket commands. With an API key configured every /api/ call
needs `Authorization: apikey KEY`; with none, only loopback clients are answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from importlib import resources
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import Raw, Struct
from prometheus_client import CONTENT_TYPE_LATEST

from hubbub import protocol
from hubbub.core.hub import Hub
from hubbub.core.session import SERVER_VERSION
from hubbub.errors import CommandError, DisconnectCode, ErrorCode
from hubbub.transports.access import is_loopback, key_matches
from hubbub.transports.admin import AdminFeed
from hubbub.transports.metrics import exposition, metrics_registry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorCode.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    ErrorCode.UNKNOWN_CHANNEL: HTTPStatus.NOT_FOUND,
    ErrorCode.METHOD_NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.NOT_AVAILABLE: HTTPStatus.NOT_FOUND,
    ErrorCode.UNRECOVERABLE_POSITION: HTTPStatus.CONFLICT,
    ErrorCode.LIMIT_EXCEEDED: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.TOO_MANY_REQUESTS: HTTPStatus.TOO_MANY_REQUESTS,
}


class PublishBody(Struct, forbid_unknown_fields=True):
    channel: str
    data: Raw
    info: Raw = protocol.NULL  # shown as the publisher (e.g. {"name": "Billing"}); any JSON; null: none


class BroadcastBody(Struct, forbid_unknown_fields=True):
    channels: list[str]
    data: Raw


class BatchItem(Struct, forbid_unknown_fields=True):
    channel: str
    data: Raw


class BatchBody(Struct, forbid_unknown_fields=True):
    publications: list[BatchItem]


class DisconnectBody(Struct, forbid_unknown_fields=True):
    user: str
    reconnect: bool = False


class SendBody(Struct, forbid_unknown_fields=True):
    user: str
    data: Raw


def error_response(code: ErrorCode, message: str, status: HTTPStatus | None = None) -> web.Response:
    status = status or HTTP_STATUS.get(code, HTTPStatus.INTERNAL_SERVER_ERROR)
    body = protocol.encode({"error": {"code": int(code), "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


def json_response(value: Any) -> web.Response:
    return web.Response(body=protocol.encode(value), content_type="application/json")


ADMIN_PATHS = frozenset({"/api/disconnect"})
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _web_file(name: str) -> str:
    return resources.files("hubbub").joinpath("web", name).read_text()


def readiness(hub: Hub, is_draining: Callable[[], bool]) -> str:
    """ "ok", or why this node should get no new traffic."""
    if is_draining():
        return "draining"
    if not hub.broker_healthy:
        return "broker unavailable"
    return "ok"


class HttpApi:
    """Builds the aiohttp application for the internal port."""

    def __init__(
        self,
        hub: Hub,
        is_draining: Callable[[], bool],
        started_at: float | None = None,
        admin_feed: AdminFeed | None = None,
    ) -> None:
        self.hub = hub
        self.admin_feed = admin_feed
        self.is_draining = is_draining
        self.started_at = started_at or time.time()
        self._registry = metrics_registry(hub, lambda: readiness(hub, is_draining) == "ok")

    def application(self) -> web.Application:
        max_body = max(self.hub.settings.max_message_bytes or 0, 1024 * 1024)
        app = web.Application(middlewares=[self._errors, self._authorize], client_max_size=max_body)
        app.router.add_get("/health", self.health)
        app.router.add_get("/health/live", self.live)
        app.router.add_get("/health/ready", self.health)
        app.router.add_get("/metrics", self.metrics)
        if self.admin_feed is not None:
            app.router.add_get("/admin", self.admin_page)
            app.router.add_get("/admin/admin.js", self.admin_script)
            app.router.add_get("/admin/canvas.js", self.admin_canvas_script)
            app.router.add_get("/favicon.ico", self.favicon)
            app.router.add_get("/admin/ws", self.admin_feed.handle_socket)
        app.router.add_post("/api/publish", self.publish)
        app.router.add_post("/api/broadcast", self.broadcast)
        app.router.add_post("/api/batch", self.batch)
        app.router.add_post("/api/send", self.send)
        app.router.add_post("/api/disconnect", self.disconnect)
        app.router.add_get("/api/history", self.history)
        app.router.add_get("/api/presence", self.presence)
        app.router.add_get("/api/channels", self.channels)
        app.router.add_get("/api/info", self.info)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except CommandError as error:
            return error_response(error.code, error.message)
        except web.HTTPRequestEntityTooLarge as error:
            return error_response(ErrorCode.LIMIT_EXCEEDED, error.text or "body too large")
        except web.HTTPException as error:
            if error.status >= 400:
                code = ErrorCode.METHOD_NOT_FOUND if error.status in (404, 405) else ErrorCode.BAD_REQUEST
                return error_response(code, error.reason, HTTPStatus(error.status))
            raise

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        settings = self.hub.settings
        if request.path in ADMIN_PATHS and settings.admin_key is not None:
            if not key_matches(request, settings.admin_key):
                return error_response(ErrorCode.UNAUTHORIZED, "admin action: send Authorization: apikey ADMIN_KEY")
            return await handler(request)
        key = settings.api_key
        if key is None:
            if not is_loopback(request.remote):
                return error_response(
                    ErrorCode.PERMISSION_DENIED, "no api_key configured: the API answers loopback clients only"
                )
            return await handler(request)
        if not key_matches(request, key) and not (settings.admin_key and key_matches(request, settings.admin_key)):
            return error_response(ErrorCode.UNAUTHORIZED, "missing or wrong API key (Authorization: apikey KEY)")
        return await handler(request)

    async def _body(self, request: web.Request, kind: type[T]) -> T:
        raw = await request.read()
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CommandError(ErrorCode.BAD_REQUEST, f"bad request body: {exc}") from None

    async def admin_page(self, request: web.Request) -> web.Response:
        """The page holds no data: everything comes over /admin/ws after the key is checked."""
        return web.Response(text=_web_file("admin.html"), content_type="text/html", headers=PAGE_HEADERS)

    async def admin_canvas_script(self, request: web.Request) -> web.Response:
        return web.Response(text=_web_file("canvas.js"), content_type="application/javascript", headers=PAGE_HEADERS)

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(text=_web_file("favicon.svg"), content_type="image/svg+xml", headers=PAGE_HEADERS)

    async def admin_script(self, request: web.Request) -> web.Response:
        return web.Response(text=_web_file("admin.js"), content_type="application/javascript", headers=PAGE_HEADERS)

    async def live(self, request: web.Request) -> web.Response:
        """The process answers: restart it only when this fails."""
        return web.json_response({"status": "alive"})

    async def health(self, request: web.Request) -> web.Response:
        """Readiness: send traffic here only when this is 200 (not while draining or without a broker)."""
        status = readiness(self.hub, self.is_draining)
        if status != "ok":
            return web.json_response({"status": status}, status=HTTPStatus.SERVICE_UNAVAILABLE)
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        body = exposition(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def publish(self, request: web.Request) -> web.Response:
        body = await self._body(request, PublishBody)
        publisher = None
        if bytes(body.info) != b"null":  # the application names who speaks: no user, no connection
            publisher = protocol.ClientInfo(user="", client="", info=protocol.validate_json(bytes(body.info)))
        data = protocol.validate_json(bytes(body.data))
        result = await self.hub.publish(body.channel, data, publisher, durable=True)
        return json_response(result)

    async def broadcast(self, request: web.Request) -> web.Response:
        body = await self._body(request, BroadcastBody)
        if not body.channels:
            raise CommandError(ErrorCode.BAD_REQUEST, "channels must not be empty")
        if len(body.channels) > self.hub.settings.max_channels_per_connection:
            raise CommandError(
                ErrorCode.LIMIT_EXCEEDED, f"at most {self.hub.settings.max_channels_per_connection} channels"
            )
        data = protocol.validate_json(bytes(body.data))
        results = await self.hub.publish_many([(channel, data) for channel in body.channels], durable=True)
        return json_response({"results": results})

    async def batch(self, request: web.Request) -> web.Response:
        """Many publications, each to its own channel with its own data: one request per feed tick."""
        body = await self._body(request, BatchBody)
        limit = self.hub.settings.max_publish_batch
        if len(body.publications) > limit:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, f"at most {limit} publications per batch")
        checked = [(p.channel, protocol.validate_json(bytes(p.data))) for p in body.publications]
        results = await self.hub.publish_many(checked, durable=True)  # checks every channel first
        return json_response({"results": results})

    async def send(self, request: web.Request) -> web.Response:
        body = await self._body(request, SendBody)
        await self.hub.send_to_user(body.user, protocol.validate_json(bytes(body.data)))
        return json_response({})

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request, DisconnectBody)
        code = DisconnectCode.FORCE_RECONNECT if body.reconnect else DisconnectCode.FORCE_DISCONNECT
        here = self.hub.connections_of(body.user)  # before: the disconnect empties it
        await self.hub.disconnect_user(body.user, code, "disconnected by the server API")
        # Every node closes the user's connections (through the broker); only this node's are counted.
        return json_response({"connections": here})

    def _query(self, request: web.Request, name: str, required: bool = False) -> str | None:
        value = request.query.get(name)
        if required and not value:
            raise CommandError(ErrorCode.BAD_REQUEST, f"query parameter {name!r} is required")
        return value

    def _query_int(self, request: web.Request, name: str) -> int | None:
        value = self._query(request, name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise CommandError(ErrorCode.BAD_REQUEST, f"query parameter {name!r} must be an integer") from None

    async def history(self, request: web.Request) -> web.Response:
        channel = self._query(request, "channel", required=True)
        assert channel is not None
        since_offset = self._query_int(request, "since")
        limit = self._query_int(request, "limit")
        reverse = (self._query(request, "reverse") or "").lower() in ("1", "true", "yes")
        since = None
        if since_offset is not None:
            epoch = self._query(request, "epoch")
            if epoch is None:  # no epoch given: read from the current stream
                epoch = (await self.hub.stream_top(channel)).epoch
            since = protocol.StreamPosition(offset=since_offset, epoch=epoch)
        return json_response(await self.hub.history(channel, since, limit, reverse))

    async def presence(self, request: web.Request) -> web.Response:
        channel = self._query(request, "channel", required=True)
        assert channel is not None
        return json_response(await self.hub.presence(channel))

    async def channels(self, request: web.Request) -> web.Response:
        counts = self.hub.subscriber_counts()
        channels = {name: {"subscribers": counts[name]} for name in sorted(counts)}
        return json_response({"channels": channels})

    async def info(self, request: web.Request) -> web.Response:
        hub = self.hub
        counts = hub.counts()
        return json_response(
            {
                "version": SERVER_VERSION,
                "pid": os.getpid(),
                "uptime": round(time.time() - self.started_at, 3),
                "development_mode": hub.settings.development_mode,
                "connections": counts.connections,
                "users": counts.users,
                "channels": counts.channels,
                "namespaces": sorted(hub.settings.namespaces),
            }
        )
