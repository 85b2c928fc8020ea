"""Sharded pub/sub on a Redis Cluster: one plain pub/sub connection per master that holds a
subscribed channel's slot, with one reader task each.

Why not redis-py's cluster pub/sub: from redis-py 8.2 it holds a shard's I/O lock across each
bounded read, so every SSUBSCRIBE and SUNSUBSCRIBE waited out the reader's poll (up to a second
each, one after another under the broker's lock); and a shard connection it closed went back to a
pool shared with commands, where a reader still inside its read could reconnect it under the next
user. A plain pub/sub per master reads and writes independently, as the single-Redis broker's
does, and owns its connection.

Each shard's client must be made with no retries (the broker's `node_client`): a connection
that fails is reported (`lost`) and the broker resubscribes everything and replays the gap from
history, rather than redis-py reconnecting it quietly and losing what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

log = logging.getLogger("hubbub.redis")

POLL = 1.0  # seconds a shard reader waits for a message before it looks again (a health check may go out)


@dataclass(eq=False)
class _Shard:
    """One master's pub/sub connection, its reader, and the SUNSUBSCRIBEs it still owes us a
    confirmation for (a confirmation we did not ask for means Redis dropped the channel)."""

    client: Redis
    pubsub: PubSub
    reader: asyncio.Task[None] | None = None
    leaving: Counter[str] = field(default_factory=Counter)


class ShardSubscriptions:
    """The shard subscriptions of one broker connection generation: a resubscribe closes this
    and makes a new one. Callers serialise `subscribe` and `unsubscribe` (the broker's lock)."""

    def __init__(
        self,
        cluster: RedisCluster,
        node_client: Callable[[str, int], Redis],
        deliver: Callable[[dict[str, Any]], None],
        lost: Callable[[str], object],
    ) -> None:
        self._cluster = cluster
        self._node_client = node_client  # (host, port) -> a client of its own, made with no retries
        self._deliver = deliver
        self._lost = lost
        self._shards: dict[str, _Shard] = {}  # master's node name -> its connection
        self._homes: dict[str, str] = {}  # subscribed pub/sub name -> the master it is subscribed on
        self._closed = False

    def home_of(self, name: str) -> str:
        """The master (node name) the cluster's slot map says holds this pub/sub name's slot."""
        node = self._cluster.get_node_from_key(name)
        return str(node.name) if node is not None else ""

    def moved(self) -> bool:
        """Whether a subscribed name's slot now lives on another master than it is subscribed on."""
        return any(self.home_of(name) != home for name, home in self._homes.items())

    @property
    def readers(self) -> list[asyncio.Task[None]]:
        return [shard.reader for shard in self._shards.values() if shard.reader is not None]

    async def subscribe(self, name: str) -> None:
        home = self.home_of(name)
        shard = self._shards.get(home) or self._open(home)
        await shard.pubsub.ssubscribe(name)
        self._homes[name] = home
        if shard.reader is None:  # the connection is up now: reading before it was would raise
            shard.reader = asyncio.get_running_loop().create_task(self._read(home, shard))

    async def unsubscribe(self, name: str) -> None:
        home = self._homes.pop(name, None)
        shard = self._shards.get(home) if home is not None else None
        if shard is None:
            return
        shard.leaving[name] += 1
        await shard.pubsub.sunsubscribe(name)

    def _open(self, home: str) -> _Shard:
        node = self._cluster.get_node(node_name=home)
        if node is None:
            raise RedisError(f"no cluster node {home} in the slot map")
        client = self._node_client(node.host, int(node.port))
        shard = _Shard(client, client.pubsub())
        self._shards[home] = shard
        return shard

    async def _read(self, home: str, shard: _Shard) -> None:
        """Hand over the shard's publications in arrival order until its connection fails."""
        while True:
            try:
                message = await shard.pubsub.get_message(timeout=POLL)
            except (RedisError, OSError) as exc:
                self._report(f"lost the pub/sub connection to shard {home}: {exc}", "connection_lost")
                return
            except Exception:  # redis-py in a state we did not foresee: the same, not a dead reader
                log.exception("reading shard %s failed", home)
                self._report(f"reading shard {home} failed", "connection_lost")
                return
            if message is None:
                continue
            kind = message["type"]
            if kind == "smessage":
                self._deliver(message)
            elif kind == "sunsubscribe":
                self._confirm_leave(home, shard, message["channel"])

    def _confirm_leave(self, home: str, shard: _Shard, channel: bytes) -> None:
        name = channel.decode()
        if shard.leaving[name]:
            shard.leaving[name] -= 1
            if not shard.leaving[name]:
                del shard.leaving[name]
        elif self._homes.get(name) == home:  # Redis ended it, not us: the slot moved. Follow it.
            self._report(f"shard {home} dropped a subscription (its slot moved)", "slot_moved")

    def _report(self, what: str, reason: str) -> None:
        if not self._closed:
            log.warning("%s: resubscribing", what)
            self._lost(reason)

    async def close(self) -> None:
        """End the readers first, then close their connections (no reader outlives its pub/sub)."""
        self._closed = True
        readers = self.readers
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for shard in self._shards.values():
            with contextlib.suppress(RedisError, OSError):
                await shard.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # redis-py before 8.2 left it unannotated
            with contextlib.suppress(RedisError, OSError):
                await shard.client.aclose()
        self._shards.clear()
        self._homes.clear()
