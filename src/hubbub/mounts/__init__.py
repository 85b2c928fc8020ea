"""hubbub's client protocol through a host server's WebSocket: ASGI and aiohttp.

For apps that must serve everything on one port. hubbub's own transport (`Server` on its
public port) is faster and stricter; docs/integration.md#one-port says by how much and what
the host server does instead of hubbub.
"""

from hubbub.mounts.aiohttp_mount import attach_aiohttp
from hubbub.mounts.asgi import ASGIApp

__all__ = ["ASGIApp", "attach_aiohttp"]
