"""The few plain HTTP answers of the public port: static pages, /health, development tokens.

Served from the upgrade handshake's parser (no second HTTP server), with a strict
Content-Security-Policy on pages.
"""

from __future__ import annotations

import functools
import re
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.http11 import Response

from hubbub import protocol
from hubbub.core.auth import mint_token

DEV_TOKEN_PATH = "/dev/token"
DEV_TOKEN_TTL = 3600
DEV_USER = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # safe inside channel names such as dm:alice,bob
PAGE_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Pages the public port serves with no build step: path -> (file in hubbub/web, content type).
PAGES = {
    "/hubbub.js": ("hubbub.js", "application/javascript; charset=utf-8"),
    "/canvas.js": ("canvas.js", "application/javascript; charset=utf-8"),
    # Browsers ask for /favicon.ico on every page: answer it (an SVG), never a 404.
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/chat": ("chat.html", "text/html; charset=utf-8"),
    "/chat/chat.js": ("chat.js", "application/javascript; charset=utf-8"),
    "/chat/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/ticker": ("ticker.html", "text/html; charset=utf-8"),
    "/ticker/ticker.js": ("ticker.js", "application/javascript; charset=utf-8"),
    "/ticker/ticker.css": ("ticker.css", "text/css; charset=utf-8"),
}


def dev_token(secret: str, query: str) -> Response:
    """DEVELOPMENT ONLY (setting `dev`): a token for any user name asked for."""
    params = parse_qs(query)
    user = params.get("user", [""])[0]
    if not DEV_USER.match(user):
        body = b'{"error":{"code":107,"message":"user: 1 to 32 letters, digits, _ or -"}}'
        return json_response(HTTPStatus.BAD_REQUEST, body)
    try:  # short-lived tokens let developers watch the refresh flow
        ttl = min(max(int(params.get("ttl", [DEV_TOKEN_TTL])[0]), 1), DEV_TOKEN_TTL)
    except ValueError:
        ttl = DEV_TOKEN_TTL
    token = mint_token(secret, user, ttl=ttl)
    return json_response(HTTPStatus.OK, protocol.encode({"token": token, "user": user, "ttl": ttl}))


def health(draining: bool) -> Response:
    status = HTTPStatus.SERVICE_UNAVAILABLE if draining else HTTPStatus.OK
    return json_response(status, b'{"status":"%s"}' % (b"draining" if draining else b"ok"))


@functools.cache
def _page_body(name: str) -> bytes:
    return resources.files("hubbub").joinpath("web", name).read_bytes()


def file_response(name: str, content_type: str) -> Response:
    body = _page_body(name)
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Content-Security-Policy", PAGE_CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-cache"),
        ]
    )
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def json_response(status: HTTPStatus, body: bytes) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
