"""Who may use the internal port: API keys compared in constant time, or loopback clients."""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web


def key_matches(request: web.Request, key: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a key matched."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "apikey" and hmac.compare_digest(given.strip().encode(), key.encode())


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
