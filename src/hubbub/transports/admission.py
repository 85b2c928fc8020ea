"""Who may open a WebSocket: Origin, per-IP limits, and the subprotocol (the wire protocol).

Checked on the upgrade request, before any WebSocket exists, and answered with plain HTTP:
403 for an Origin outside the allow-list, 429 for too many attempts or open connections from
one address, 400 for a subprotocol this server does not speak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Final

from websockets.exceptions import NegotiationError
from websockets.http11 import Response
from websockets.typing import Subprotocol

from hubbub import protocol, wire
from hubbub.config import Settings
from hubbub.core.ratelimit import KeyedBuckets
from hubbub.transports.handshake import UpgradeRequest
from hubbub.transports.wsconnection import WebSocketConnection
from hubbub.wire import centrifugo


class Admission:
    """Origin allow-list and per-IP limits; counts refusals through `count_limit_hit`."""

    def __init__(self, settings: Settings, count_limit_hit: Callable[[str], None]) -> None:
        self._allowed_origins = (
            [entry.strip().lower().rstrip("/") for entry in settings.allowed_origins.split(",") if entry.strip()]
            if settings.allowed_origins
            else None
        )
        self._max_per_ip = settings.max_connections_per_ip
        self._attempts = KeyedBuckets(settings.connect_rate_per_ip, settings.connect_burst_per_ip)
        self._open_per_ip: Counter[str] = Counter()
        self._count = count_limit_hit

    def refusal(self, connection: WebSocketConnection, request: UpgradeRequest) -> Response | None:
        """The HTTP answer that refuses this upgrade, or None to let it through."""
        refused = self.check(request.headers.get("origin"), request.headers.get("host"), peer_ip(connection))
        return None if refused is None else connection.respond(*refused)

    def check(self, origin: str | None, host: str | None, address: str) -> tuple[HTTPStatus, str] | None:
        """(status, text) refusing an upgrade from `address`, or None; any transport's handshake."""
        refused = self.check_origin(origin, host)
        if refused is not None:
            return refused
        if self._max_per_ip is not None and self._open_per_ip[address] >= self._max_per_ip:
            self._count("connections_per_ip")
            return HTTPStatus.TOO_MANY_REQUESTS, "too many connections from your address\n"
        if not self._attempts.take(address):
            self._count("connection_attempts_per_ip")
            return HTTPStatus.TOO_MANY_REQUESTS, "too many connection attempts, slow down\n"
        return None

    def check_origin(self, origin: str | None, host: str | None) -> tuple[HTTPStatus, str] | None:
        """The Origin allow-list alone (a request that opens no connection: an HTTP-stream POST)."""
        if not origin_allowed(origin, host, self._allowed_origins):
            self._count("origin")
            return HTTPStatus.FORBIDDEN, "origin not allowed\n"
        return None

    def opened(self, connection: WebSocketConnection) -> str:
        """Count an open connection of its address; pass the address to `release` once it is gone.

        (An address string, not a closure: it is kept per connection, and a closure costs ~0.3 KiB.)
        """
        return self.opened_address(peer_ip(connection))

    def opened_address(self, address: str) -> str:
        self._open_per_ip[address] += 1
        return address

    def release(self, address: str) -> None:
        self._open_per_ip[address] -= 1
        if self._open_per_ip[address] <= 0:
            del self._open_per_ip[address]


def select_subprotocol(offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The client's first offer we speak (see hubbub.wire); offering nothing means JSON."""
    if not offered:
        return None
    chosen = first_spoken(offered)
    if chosen is None:
        raise NegotiationError(UNSUPPORTED_SUBPROTOCOL)
    return Subprotocol(chosen)


# GraphQL and Centrifugo's Protobuf only at their own paths (websocket.py).
SPOKEN: Final = (
    *wire.PROTOCOLS,
    protocol.SUBPROTOCOL_GRAPHQL,
    *((centrifugo.SUBPROTOCOL_PROTOBUF,) if wire.PROTOBUF_AVAILABLE else ()),
)
UNSUPPORTED_SUBPROTOCOL: Final = f"unsupported subprotocol; this server speaks {', '.join(SPOKEN)}" + (
    "" if wire.PROTOBUF_AVAILABLE else f" ({centrifugo.SUBPROTOCOL_PROTOBUF} needs hubbub[protobuf])"
)


def first_spoken(offered: Sequence[str]) -> str | None:
    """The first offered subprotocol this server speaks."""
    return next((name for name in offered if name in SPOKEN), None)


def peer_ip(connection: WebSocketConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "unknown"


def origin_allowed(origin: str | None, host: str | None, allowed: list[str] | None) -> bool:
    """Cross-site WebSocket hijacking defence (RFC 6455 section 10.2).

    No Origin header: not a browser, allowed. With an allow-list: exact origins, `*` for any,
    or `https://*.example.com` for subdomains. Without one: the Origin's host:port must be the
    Host the client asked for (same host).
    """
    if origin is None:
        return True
    origin = origin.strip().lower()
    if allowed is None:
        if host is None:
            return False
        origin_host = origin.split("://", 1)[-1]
        return origin_host == host.strip().lower()
    for pattern in allowed:
        if pattern == "*" or pattern == origin:
            return True
        if "://*." in pattern:
            scheme, suffix = pattern.split("://*.", 1)
            if origin.startswith(scheme + "://") and origin.endswith("." + suffix):
                return True
    return False
