"""The server API on the internal port (aiohttp): publish, history, presence, disconnect.

Same Hub methods as the WebSocket commands. With an API key configured every /api/ call
needs `Authorization: apikey KEY`; with none, only loopback clients are answered.
"""

from __future__ import annotations

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
from hubbub.core.server_api import ServerApi
from hubbub.errors import CommandError, ErrorCode
from hubbub.transports.access import is_loopback, key_matches
from hubbub.transports.admin import AdminFeed
from hubbub.transports.metrics import exposition, metrics_registry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

HTTP_STATUS: dict[int, HTTPStatus] = {
    ErrorCode.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorCode.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    ErrorCode.UNKNOWN_CHANNEL: HTTPStatus.NOT_FOUND,
    ErrorCode.METHOD_NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.NOT_AVAILABLE: HTTPStatus.NOT_FOUND,
    ErrorCode.UNRECOVERABLE_POSITION: HTTPStatus.CONFLICT,
    ErrorCode.LIMIT_EXCEEDED: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.TOO_MANY_REQUESTS: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorCode.IN_PROGRESS: HTTPStatus.CONFLICT,
}


class PublishBody(Struct, forbid_unknown_fields=True):
    channel: str
    data: Raw
    info: Raw = protocol.NULL  # shown as the publisher (e.g. {"name": "Billing"}); any JSON; null: none
    idempotency_key: str | None = None  # a retry with the same key gets the first result, not a second publish


class BroadcastBody(Struct, forbid_unknown_fields=True):
    channels: list[str]
    data: Raw
    idempotency_key: str | None = None


class BatchItem(Struct, forbid_unknown_fields=True):
    channel: str
    data: Raw


class BatchBody(Struct, forbid_unknown_fields=True):
    publications: list[BatchItem]
    idempotency_key: str | None = None


class UserChannelBody(Struct, forbid_unknown_fields=True):
    user: str
    channel: str


class DisconnectBody(Struct, forbid_unknown_fields=True):
    user: str
    reconnect: bool = False


class SendBody(Struct, forbid_unknown_fields=True):
    user: str
    data: Raw
    idempotency_key: str | None = None


def error_response(code: ErrorCode | int, message: str, status: HTTPStatus | None = None) -> web.Response:
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
        api: ServerApi,
        is_draining: Callable[[], bool],
        admin_feed: AdminFeed | None = None,
    ) -> None:
        self.api = api
        self.hub = hub = api.hub
        self.admin_feed = admin_feed
        self.is_draining = is_draining
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
        app.router.add_post("/api/subscribe", self.subscribe)
        app.router.add_post("/api/unsubscribe", self.unsubscribe)
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
        info = None
        if bytes(body.info) != b"null":  # the application names who speaks: no user, no connection
            info = protocol.validate_json(bytes(body.info))
        data = protocol.validate_json(bytes(body.data))
        result = await self.api.publish(body.channel, data, info=info, idempotency_key=body.idempotency_key)
        return json_response(result)

    async def broadcast(self, request: web.Request) -> web.Response:
        body = await self._body(request, BroadcastBody)
        data = protocol.validate_json(bytes(body.data))
        results = await self.api.broadcast(body.channels, data, idempotency_key=body.idempotency_key)
        return json_response({"results": results})

    async def batch(self, request: web.Request) -> web.Response:
        """Many publications, each to its own channel with its own data: one request per feed tick."""
        body = await self._body(request, BatchBody)
        limit = self.hub.settings.max_publish_batch
        if len(body.publications) > limit:  # before validating a huge body's every item
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, f"at most {limit} publications per batch")
        checked = [(p.channel, protocol.validate_json(bytes(p.data))) for p in body.publications]
        results = await self.api.batch(checked, idempotency_key=body.idempotency_key)  # checks every channel first
        return json_response({"results": results})

    async def send(self, request: web.Request) -> web.Response:
        body = await self._body(request, SendBody)
        data = protocol.validate_json(bytes(body.data))
        await self.api.send(body.user, data, idempotency_key=body.idempotency_key)
        return json_response({})

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request, DisconnectBody)
        # Every node closes the user's connections (through the broker); only this node's are counted.
        return json_response({"connections": await self.api.disconnect(body.user, reconnect=body.reconnect)})

    async def subscribe(self, request: web.Request) -> web.Response:
        body = await self._body(request, UserChannelBody)
        return json_response({"connections": await self.api.subscribe(body.user, body.channel)})

    async def unsubscribe(self, request: web.Request) -> web.Response:
        body = await self._body(request, UserChannelBody)
        return json_response({"connections": await self.api.unsubscribe(body.user, body.channel)})

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
        result = await self.api.history(
            channel,
            since_offset=self._query_int(request, "since"),
            epoch=self._query(request, "epoch"),
            limit=self._query_int(request, "limit"),
            reverse=(self._query(request, "reverse") or "").lower() in ("1", "true", "yes"),
        )
        return json_response(result)

    async def presence(self, request: web.Request) -> web.Response:
        channel = self._query(request, "channel", required=True)
        assert channel is not None
        return json_response(await self.api.presence(channel))

    async def channels(self, request: web.Request) -> web.Response:
        counts = self.api.channels()
        return json_response({"channels": {name: {"subscribers": count} for name, count in counts.items()}})

    async def info(self, request: web.Request) -> web.Response:
        return json_response(self.api.info())
