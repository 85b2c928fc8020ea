"""The admin view's live data: one sampler task per node, snapshots pushed over WebSocket.

`/admin` (a static page) and `/admin/ws` live on the internal port. A client proves itself
with its first message, `{"key": "..."}`, checked like the server API: the admin key when one
is set, else the API key, else only loopback clients. It then gets the recent history of
snapshots and one new snapshot per `interval`. `hubbub top` reads the same feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
from collections import Counter, deque
from typing import Any

from aiohttp import WSMsgType, web

from hubbub.core.hub import Hub
from hubbub.core.session import SERVER_VERSION
from hubbub.transports.access import is_loopback

AUTH_TIMEOUT = 10.0
TOP_CHANNELS = 10


class AdminFeed:
    """Samples hub counters every `interval` seconds and pushes the snapshot to admin sockets."""

    def __init__(self, hub: Hub, *, interval: float = 1.0, keep: int = 300) -> None:
        self.hub = hub
        self.interval = interval
        self.node_id = secrets.token_hex(4)
        self.started_at = time.time()
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=keep)  # the plots' window: 5 minutes
        self.sockets: set[web.WebSocketResponse] = set()
        self._task: asyncio.Task[None] | None = None
        self._previous: dict[str, float] = {}
        self._previous_time = time.monotonic()

    def start(self) -> None:
        self.snapshots.append(self.sample())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for socket in list(self.sockets):
            await socket.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # a sampling period, not synchronisation
            snapshot = self.sample()
            self.snapshots.append(snapshot)
            message = json.dumps({"snapshot": snapshot})
            for socket in list(self.sockets):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await socket.send_str(message)

    def sample(self) -> dict[str, Any]:
        """Totals now, and per-second rates since the previous sample."""
        hub = self.hub
        stats = hub.stats
        now = time.monotonic()
        elapsed = max(now - self._previous_time, 1e-6)
        totals = {
            "messages_in": float(sum(stats.messages_in.values())),
            "messages_out": float(sum(stats.messages_out.values())),
            "bytes_out": float(sum(stats.bytes_out.values())),
            "dropped": float(sum(stats.dropped.values())),
            "limit_hits": float(sum(stats.limit_hits.values())),
        }
        rates = {
            f"{key}_per_s": round((value - self._previous.get(key, value)) / elapsed, 2)
            for key, value in totals.items()
        }
        self._previous, self._previous_time = totals, now
        per_channel, stats.channel_publications = stats.channel_publications, Counter()
        subscribers = hub.subscriber_counts()
        counts = hub.counts()
        top = [
            {
                "channel": channel,
                "rate": round(count / elapsed, 2),
                "subscribers": subscribers.get(channel, 0),
            }
            for channel, count in per_channel.most_common(TOP_CHANNELS)
        ]
        return {
            "time": time.time(),
            "nodes": [
                {
                    "id": self.node_id,
                    "version": SERVER_VERSION,
                    "uptime": round(time.time() - self.started_at, 1),
                    "connections": counts.connections,
                }
            ],
            "connections": counts.connections,
            "users": counts.users,
            "channels": counts.channels,
            "subscriptions": counts.subscriptions,
            "top_channels": top,
            **rates,
        }

    def key_accepted(self, request: web.Request, given: str) -> bool:
        settings = self.hub.settings
        required = settings.admin_key or settings.api_key
        if required is None:
            return is_loopback(request.remote)
        return hmac.compare_digest(given.encode(), required.encode())

    async def handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=25.0, max_msg_size=4096)
        await socket.prepare(request)
        try:
            message = await socket.receive(timeout=AUTH_TIMEOUT)
            given = json.loads(message.data).get("key", "") if message.type == WSMsgType.TEXT else ""
        except (TimeoutError, ValueError, AttributeError):
            given = None
        if not isinstance(given, str) or not self.key_accepted(request, given):
            await socket.send_str(json.dumps({"error": "wrong or missing admin key"}))
            await socket.close(code=1008, message=b"admin key required")
            return socket
        await socket.send_str(json.dumps({"history": list(self.snapshots)}))
        self.sockets.add(socket)
        try:
            async for _ in socket:  # the feed is one-way; reading notices the close
                pass
        finally:
            self.sockets.discard(socket)
        return socket
