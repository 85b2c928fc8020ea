"""Redis backends: history, presence and fan-out shared by every node (redis-py asyncio).

Keys, all under a settable prefix (default `hubbub`); the channel sits in a hash tag, so one
channel's keys live in one Redis Cluster slot and its Lua scripts stay single-slot:

    {prefix}:salt                      string: per-dataset salt; epochs derive from it
    {prefix}:salt:{TAG}                string (Redis Cluster): a slot's salt, TAG a hash tag in that slot
    {prefix}:{ch:CHANNEL}:meta         hash: epoch, top (newest offset)
    {prefix}:{ch:CHANNEL}:stream       stream: entries with ID "OFFSET-0", fields d (data), i (info), e (expires)
    {prefix}:{ch:CHANNEL}:presence     hash: connection id -> ClientInfo JSON
    {prefix}:{ch:CHANNEL}:presence:exp sorted set: connection id scored by expiry time
    {prefix}:pubsub:CHANNEL            pub/sub: publications and join/leave pushes
    {prefix}:{ch:CHANNEL}:pubsub       sharded pub/sub (Redis Cluster): the same, in the channel's slot
    {prefix}:control                   pub/sub: messages for users on every node
    {prefix}:heartbeat:NODE            pub/sub: a node's heartbeat, heard only by itself

Offsets are assigned by a Lua script (HINCRBY on the meta hash), so every node agrees. If Redis
loses the data, the salt is made again and every epoch changes: clients recovering from before
are told `recovered: false`. On a cluster each slot has a salt of its own, in that slot: a shard
that loses its data loses its slots' salts with their streams, whatever the other shards keep.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot
from redis.exceptions import RedisError

from hubbub.backends.base import Announcement, Append, BrokerHandler, HistoryPage, StoredPublication, StreamTop
from hubbub.backends.redis_shards import ShardSubscriptions
from hubbub.backends.streams import Clock, new_salt

log = logging.getLogger("hubbub.redis")

META_TTL = 30 * 86400  # seconds a stream's epoch and top outlive its last publication or read

# A new stream's epoch derives from the salt (KEYS[3]: the dataset's, on a cluster its slot's), made
# here if missing: a Redis that lost its data loses its salt too, and every epoch changes. There is
# one salt per dataset or slot, so reads may make it without growing Redis per channel name.
_SALTED_EPOCH = """
local function salted_epoch(salt_key, new_salt, channel)
  local salt = redis.call('GET', salt_key)
  if not salt then
    salt = new_salt
    redis.call('SET', salt_key, salt)
  end
  return string.sub(redis.sha1hex(salt .. '\\n' .. channel), 1, 12)
end

-- The offset of a stream's newest entry (its IDs are OFFSET-0), 0 with no stream: where a stream
-- whose meta hash is gone (evicted, or expired before it) goes on, under its same derived epoch.
local function stream_top(stream)
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if newest then
    return tonumber(string.match(newest[1], '^%d+'))
  end
  return 0
end
"""

# One channel's appends, in order; each is published as it is appended when ARGV[2] names the
# publish command. The meta TTL outlasts the stream's (a stream without its meta hash would
# restart at offset 1, and XADD refuses IDs below its newest). ARGV: time, command, pub/sub name,
# meta TTL, a new salt, the channel, then per
# publication size, data, info, expires, stream TTL, frame head, frame tail (around its offset).
# KEYS: meta, stream, salt.
_APPEND = (
    _SALTED_EPOCH
    + """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = salted_epoch(KEYS[3], ARGV[5], ARGV[6])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', stream_top(KEYS[2]))
end
local now, command, name = ARGV[1], ARGV[2], ARGV[3]
local tops = {}
for i = 7, #ARGV, 7 do
  local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
  local id = top .. '-0'
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[i], id, 'd', ARGV[i + 1], 'i', ARGV[i + 2], 'e', ARGV[i + 3], 't', now)
  redis.call('EXPIRE', KEYS[2], ARGV[i + 4])
  if command ~= '' and ARGV[i + 5] ~= '' then
    redis.call(command, name, top .. '\\n' .. ARGV[i + 5] .. top .. ARGV[i + 6])
  end
  tops[#tops + 1] = top
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {epoch, redis.call('XLEN', KEYS[2]), tops}
"""
)

# One channel's top, epoch and a page of entries. ARGV: start, count, reverse ('1'), a new salt, the
# channel, meta TTL. KEYS: meta, stream, salt. A read renews the meta hash it finds (never makes one,
# never shortens it): the delivery check reads every live subscription's top, so a quiet channel
# keeps its offsets.
_READ = (
    _SALTED_EPOCH
    + """
local meta = redis.call('HMGET', KEYS[1], 'top', 'epoch')
if not meta[2] then
  meta[1] = stream_top(KEYS[2])
  meta[2] = salted_epoch(KEYS[3], ARGV[4], ARGV[5])
else
  redis.call('EXPIRE', KEYS[1], ARGV[6], 'GT')
end
local entries
if ARGV[3] == '1' then
  entries = redis.call('XREVRANGE', KEYS[2], ARGV[1], '-', 'COUNT', ARGV[2])
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {meta[1], meta[2], entries}
"""
)

_MARK_READ = """
local kept = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local offset = tonumber(ARGV[2])
if offset > kept then
  redis.call('HSET', KEYS[1], ARGV[1], offset)
  kept = offset
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return kept
"""

_PRESENCE_GET = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(expired) do
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
end
return redis.call('HGETALL', KEYS[1])
"""


@functools.cache
def _slot_tags() -> list[str]:
    """For each of Redis Cluster's 16,384 slots, a short hash tag that lands in it (built once,
    about 0.1 s: hex numbers in turn until every slot has one; the longest is 5 characters)."""
    tags: list[str] = [""] * SLOTS
    missing, number = SLOTS, 0
    while missing:
        tag = b"%x" % number
        slot = binascii.crc_hqx(tag, 0) % SLOTS  # redis.crc.key_slot, without its brace search
        if not tags[slot]:
            tags[slot] = tag.decode()
            missing -= 1
        number += 1
    return tags


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def channel(self, channel: str, kind: str) -> str:
        return f"{self.prefix}:{{ch:{channel}}}:{kind}"

    @property
    def salt(self) -> str:
        return f"{self.prefix}:salt"

    def slot_salt(self, channel: str) -> str:
        """Redis Cluster: the salt of the slot that holds `channel`'s keys, in that slot."""
        slot = key_slot(self.channel(channel, "meta").encode())
        return f"{self.prefix}:salt:{{{_slot_tags()[slot]}}}"

    def pubsub(self, channel: str) -> str:
        return f"{self.prefix}:pubsub:{channel}"

    @property
    def control(self) -> str:
        return f"{self.prefix}:control"

    def heartbeat(self, node: str) -> str:
        return f"{self.prefix}:heartbeat:{node}"

    def shard_pubsub(self, channel: str) -> str:
        """Redis Cluster: the channel's sharded pub/sub name, in the slot of its keys."""
        return f"{self.prefix}:{{ch:{channel}}}:pubsub"

    def idempotency(self, channel: str, key: str) -> str:
        """In the channel's hash slot, beside its stream."""
        return f"{self.prefix}:{{ch:{channel}}}:idem:{key}"

    def read_positions(self, user: str) -> str:
        """A hash per user: channel -> offset read up to."""
        return f"{self.prefix}:read:{{u:{user}}}"


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Connection limits of each Redis client (one per backend); the server fills them from its
    `redis_*` settings, so defaults live in config.py only. None: no limit."""

    max_connections: int
    pool_timeout: float | None
    connect_timeout: float | None
    socket_timeout: float | None
    health_check_interval: float


CLUSTER_SCHEME = "redis-cluster://"
Client = Redis | RedisCluster


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def seed_nodes(url: str) -> list[ClusterNode]:
    """redis-cluster://HOST:PORT[,HOST:PORT...]: the nodes to learn the cluster's layout from."""
    nodes = []
    for seed in url.removeprefix(CLUSTER_SCHEME).split(","):
        host, colon, port = seed.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"redis-cluster seed {seed!r} is not HOST:PORT")
        nodes.append(ClusterNode(host, int(port)))
    return nodes


def connect(url: str, options: RedisOptions) -> Client:
    """A client whose pool waits for a free connection (up to `pool_timeout`) instead of failing at
    once: a reconnect storm makes many subscribes at the same moment. A redis-cluster:// URL gets
    redis-py's cluster client (at most `max_connections` per node; it follows MOVED itself)."""
    if is_cluster(url):
        return RedisCluster(
            startup_nodes=seed_nodes(url),
            max_connections=options.max_connections,
            socket_connect_timeout=options.connect_timeout,
            socket_timeout=options.socket_timeout,
            health_check_interval=options.health_check_interval,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=options.max_connections,
        timeout=options.pool_timeout,
        socket_connect_timeout=options.connect_timeout,
        socket_timeout=options.socket_timeout,
        health_check_interval=options.health_check_interval,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """How a node checks that it still hears Redis: it publishes to a channel only it subscribes
    to every `interval` seconds, and resubscribes when it heard nothing for `timeout` seconds."""

    interval: float
    timeout: float


# What the tests and tools that build backends by hand use: the settings' defaults.
DEFAULT_OPTIONS = RedisOptions(
    max_connections=64, pool_timeout=10.0, connect_timeout=5.0, socket_timeout=10.0, health_check_interval=15.0
)


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """Acknowledge an append only once `replicas` replicas have it (WAIT), within `timeout` s."""

    replicas: int
    timeout: float


class NotReplicated(RedisError):
    """WAIT returned with fewer replicas than asked: the publication may be lost in a failover."""


class RedisHistory:
    """History every node shares: offsets from a Lua script, entries in a capped stream.

    With `announce` (the broker is Redis too, under the same prefix), the append script also
    publishes the publication's frame on the channel's pub/sub name: Redis runs the script
    whole, so every node hears a channel's publications in offset order even when several
    nodes publish to it at once (appending, then publishing from each node, could overtake).

    With a `ReplicaWait`, each append (or a batch's appends) is followed by WAIT on the same
    connection, so a publication is acknowledged only once replicas hold it and survives its
    master's death (a replica promoted by a failover has it, offset included).
    """

    def __init__(
        self,
        url: str,
        prefix: str = "hubbub",
        clock: Clock = time.time,
        options: RedisOptions = DEFAULT_OPTIONS,
        wait: ReplicaWait | None = None,
        announce: bool = False,
    ) -> None:
        self._redis = connect(url, options)
        self._options = options
        self._wait = wait
        self.announces = announce
        self._node_clients: dict[str, Redis] = {}  # cluster + wait: a client per master, for WAIT
        self._keys = RedisKeys(prefix)
        self._clock = clock
        self._cluster = isinstance(self._redis, RedisCluster)  # a salt per slot
        self._lengths: dict[str, int] = {}
        self._append = self._redis.register_script(_APPEND)
        self._mark_read = self._redis.register_script(_MARK_READ)
        self._read_script = self._redis.register_script(_READ)

    async def open(self) -> None:
        """The scripts read the salt each time (a copy kept here would outlive a Redis that lost it)."""
        if self._cluster:
            _slot_tags()  # built now (about 0.1 s) rather than under the first publish

    @property
    def stored_publications(self) -> int:
        """Entries in the streams this node appended to (other nodes' streams are not counted)."""
        return sum(self._lengths.values())

    async def append(
        self,
        channel: str,
        data: bytes,
        info: bytes | None,
        *,
        size: int,
        ttl: float,
        announcement: Announcement | None = None,
    ) -> StreamTop:
        (top,) = await self.append_many([Append(channel, data, info, size, ttl, announcement)])
        return top

    async def append_many(self, items: list[Append]) -> list[StreamTop]:
        """One script call per channel, its appends in order (each published as it is appended,
        when the store announces). One Redis: every channel's call in one pipeline, one round trip;
        a cluster (which runs no scripts in pipelines): the channels' calls side by side. Either
        way a turn's publications of a channel reach other nodes together and coalesce there."""
        now = self._clock()
        by_channel: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_channel.setdefault(item.channel, []).append(index)
        calls = [
            (self._script_keys(channel), self._append_args(channel, [items[i] for i in indexes], now))
            for channel, indexes in by_channel.items()
        ]
        if self._cluster:
            replies = list(await asyncio.gather(*(self._append_on_master(keys, args) for keys, args in calls)))
        else:
            replies = await self._append_pipelined(calls)
        tops = [StreamTop(0, "")] * len(items)
        for (channel, indexes), (epoch, length, offsets) in zip(by_channel.items(), replies, strict=True):
            self._lengths[channel] = int(length)
            for index, offset in zip(indexes, offsets, strict=True):
                tops[index] = StreamTop(int(offset), epoch.decode())
        return tops

    def _script_keys(self, channel: str) -> list[str]:
        """The scripts' KEYS: meta, stream, and the salt (on a cluster the slot's, beside them)."""
        salt = self._keys.slot_salt(channel) if self._cluster else self._keys.salt
        return [self._keys.channel(channel, "meta"), self._keys.channel(channel, "stream"), salt]

    def _append_args(self, channel: str, items: list[Append], now: float) -> list[bytes | str | int]:
        """The append script's arguments for one channel's items (see _APPEND)."""
        if not self.announces:
            command, name = "", ""
        elif self._cluster:  # the sharded name shares the slot of the keys
            command, name = "SPUBLISH", self._keys.shard_pubsub(channel)
        else:
            command, name = "PUBLISH", self._keys.pubsub(channel)
        meta_ttl = max(META_TTL, max(int(item.ttl) for item in items) + 1)  # the stream's TTL, and a second
        args: list[bytes | str | int] = [repr(now), command, name, meta_ttl, new_salt(), channel]
        for item in items:
            announcement = item.announcement
            args += [
                item.size,
                item.data,
                item.info or b"",
                repr(now + item.ttl),
                max(1, int(item.ttl)),
                announcement.head if announcement is not None else b"",
                announcement.tail if announcement is not None else b"",
            ]
        return args

    async def _append_pipelined(self, calls: list[tuple[list[str], list[bytes | str | int]]]) -> list[Any]:
        """Every call in one pipeline, then WAIT on the same connection (it covers all of them)."""
        redis = self._redis
        assert not isinstance(redis, RedisCluster)  # a cluster's go through _append_on_master
        async with redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._append(keys=keys, args=args, client=pipe)
            if self._wait is not None:
                self._queue_wait(pipe)
            replies = await pipe.execute()
        if self._wait is not None:
            self._check_replicas(replies.pop())
        return list(replies)

    async def _append_on_master(self, keys: list[str], args: list[bytes | str | int]) -> Any:
        """One channel's call on a cluster. With WAIT: the script, then WAIT, on one connection
        (WAIT covers that connection's writes), a client of the slot's master."""
        if self._wait is None:
            return await self._append(keys=keys, args=args)
        node = self._redis.get_node_from_key(keys[0])  # type: ignore[union-attr]
        if node is None:
            raise RedisError(f"no cluster node holds {keys[0]}")
        client = self._node_clients.get(node.name) or self._node_client(node.name, node.host, int(node.port))
        try:
            async with client.pipeline(transaction=False) as pipe:
                await self._append(keys=keys, args=args, client=pipe)
                self._queue_wait(pipe)
                appended, acknowledged = await pipe.execute()
        except RedisError:  # the slot moved or its master died: learn anew
            await self._redis.nodes_manager.initialize()  # type: ignore[union-attr]
            raise
        self._check_replicas(acknowledged)
        return appended

    def _node_client(self, name: str, host: str, port: int) -> Redis:
        client = Redis(
            host=host,
            port=port,
            socket_connect_timeout=self._options.connect_timeout,
            socket_timeout=self._options.socket_timeout,
        )
        self._node_clients[name] = client
        return client

    def _queue_wait(self, pipe: Any) -> None:
        assert self._wait is not None
        pipe.execute_command("WAIT", self._wait.replicas, max(1, int(self._wait.timeout * 1000)))

    def _check_replicas(self, acknowledged: Any) -> None:
        assert self._wait is not None
        if int(acknowledged) < self._wait.replicas:
            raise NotReplicated(
                f"{acknowledged} of {self._wait.replicas} replicas have it after {self._wait.timeout} s"
            )

    async def mark_read(self, user: str, channel: str, offset: int) -> int:
        kept = await self._mark_read(keys=[self._keys.read_positions(user)], args=[channel, offset, META_TTL])
        return int(kept)

    async def read_positions(self, user: str, channels: list[str]) -> dict[str, int]:
        if not channels:
            return {}
        values = await self._redis.hmget(self._keys.read_positions(user), channels)
        return {
            channel: int(value) if value is not None else 0 for channel, value in zip(channels, values, strict=True)
        }

    async def read(
        self, channel: str, *, after: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryPage:
        if reverse:
            start = f"({after}-0" if after is not None else "+"
        else:
            start = f"({after}-0" if after is not None else "-"
        count = limit if limit is not None else 2**31
        args: list[str | int] = [start, max(count, 1), "1" if reverse else "0", new_salt(), channel, META_TTL]
        top_offset, epoch, entries = await self._read_script(keys=self._script_keys(channel), args=args)
        if count == 0:
            entries = []
        top = StreamTop(int(top_offset or 0), epoch.decode())
        now = self._clock()
        publications = []
        for entry_id, raw_fields in entries:
            fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
            if float(fields[b"e"]) <= now:
                continue
            info = fields[b"i"] or None
            stored = float(fields[b"t"]) if b"t" in fields else None  # entries from before times were kept
            publications.append(StoredPublication(int(entry_id.split(b"-")[0]), bytes(fields[b"d"]), info, stored))
        return HistoryPage(publications, top)

    async def top(self, channel: str) -> StreamTop:
        return (await self.read(channel, limit=0)).top

    async def sync(self) -> None:
        """Each append is acknowledged by Redis; durability is Redis's persistence setting."""

    async def channels(self) -> list[str]:
        pattern = self._keys.channel("*", "meta")  # braces are literal in Redis glob patterns
        found = []
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            name = key.decode()
            found.append(name[name.index("{ch:") + 4 : name.rindex("}")])
        return sorted(found)

    async def close(self) -> None:
        for client in self._node_clients.values():
            await client.aclose()
        await self._redis.aclose()


class RedisIdempotency:
    """Idempotency keys every node shares: SET NX claims a key, so a retry that lands on another
    node finds the first publish's result (or finds it still running)."""

    def __init__(self, url: str, prefix: str = "hubbub", options: RedisOptions = DEFAULT_OPTIONS) -> None:
        self._redis = connect(url, options)
        self._keys = RedisKeys(prefix)

    async def open(self) -> None:
        await self._redis.ping()

    async def claim(self, channel: str, key: str, ttl: float) -> bytes | None:
        name = self._keys.idempotency(channel, key)
        for _ in range(2):  # the key may expire between SET and GET: then claim it again
            if await self._redis.set(name, b"", nx=True, px=max(1, int(ttl * 1000))):
                return None
            found = await self._redis.get(name)
            if found is not None:
                return found if isinstance(found, bytes) else found.encode()
        return b""  # pragma: no cover - expired twice in a row: say "pending", the caller retries

    async def complete(self, channel: str, key: str, result: bytes, ttl: float) -> None:
        await self._redis.set(self._keys.idempotency(channel, key), result, px=max(1, int(ttl * 1000)))

    async def release(self, channel: str, key: str) -> None:
        await self._redis.delete(self._keys.idempotency(channel, key))

    async def close(self) -> None:
        await self._redis.aclose()


class RedisPresence:
    """Presence every node shares. Entries expire `ttl` seconds after their node last refreshed
    them, so the entries of a node that died go away on their own."""

    def __init__(
        self,
        url: str,
        prefix: str = "hubbub",
        ttl: float = 60.0,
        clock: Clock = time.time,
        options: RedisOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._redis = connect(url, options)
        self._keys = RedisKeys(prefix)
        self._ttl = ttl
        self._clock = clock
        self._mine: dict[tuple[str, str], bytes] = {}  # what this node keeps alive
        self._get = self._redis.register_script(_PRESENCE_GET)
        self._refresher: asyncio.Task[None] | None = None

    def _keys_of(self, channel: str) -> tuple[str, str]:
        return self._keys.channel(channel, "presence"), self._keys.channel(channel, "presence:exp")

    async def _write(self, channel: str, client_id: str, info: bytes) -> None:
        entries, expiries = self._keys_of(channel)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(entries, client_id, info)
            pipe.zadd(expiries, {client_id: self._clock() + self._ttl})
            pipe.expire(entries, int(self._ttl) + 1)
            pipe.expire(expiries, int(self._ttl) + 1)
            await pipe.execute()

    async def add(self, channel: str, client_id: str, info: bytes) -> None:
        self._mine[(channel, client_id)] = info
        await self._write(channel, client_id, info)

    async def remove(self, channel: str, client_id: str) -> None:
        self._mine.pop((channel, client_id), None)
        entries, expiries = self._keys_of(channel)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(entries, client_id)
            pipe.zrem(expiries, client_id)
            await pipe.execute()

    async def get(self, channel: str) -> dict[str, bytes]:
        entries, expiries = self._keys_of(channel)
        flat = await self._get(keys=[entries, expiries], args=[repr(self._clock())])
        return {flat[i].decode(): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def refresh(self) -> None:
        """Push this node's entries' expiry forward (the refresher task calls this every ttl/3)."""
        for (channel, client_id), info in list(self._mine.items()):
            await self._write(channel, client_id, info)

    async def open(self) -> None:
        """Start refreshing this node's entries (their TTL is the lease a dead node's entries expire by)."""
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)  # a lease period, not synchronisation
            try:
                await self.refresh()
            except RedisError as exc:
                log.warning("presence refresh failed: %s", exc)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._redis.aclose()


def _message(offset: int | None, frame: bytes) -> bytes:
    """What travels on a channel: `OFFSET\\nFRAME` (`-` when there is no offset)."""
    return (b"-" if offset is None else b"%d" % offset) + b"\n" + frame


class RedisBroker:
    """Fan-out between nodes over Redis pub/sub: one subscription per channel per node.

    One reader task hands messages to the hub in arrival order. Publications carry their
    offset in front of the encoded push: `OFFSET\\nFRAME` (`-` when there is none).

    A pub/sub connection can go deaf without an error (Redis dropping a subscriber over its
    `client-output-buffer-limit pubsub`, a half-open TCP connection): the heartbeat notices.
    Either way the broker resubscribes, lets the hub replay what was missed (`on_resubscribed`),
    and reports itself unhealthy (the node not ready) until then.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "hubbub",
        on_health: Callable[[bool], None] | None = None,
        options: RedisOptions = DEFAULT_OPTIONS,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self._url = url
        self._redis = connect(url, options)
        self._keys = RedisKeys(prefix)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._healthy = False
        self._on_health = on_health
        self._health_changed = asyncio.Event()
        self._pubsub_prefix = self._keys.pubsub("").encode()
        self._control_name = self._keys.control.encode()
        self._heartbeat = heartbeat
        self._heartbeat_name = self._keys.heartbeat(secrets.token_hex(8))
        self._heard_at = time.monotonic()
        self._deaf: str | None = None  # why to resubscribe (the heartbeat, the hub): the reader does
        self._beater: asyncio.Task[None] | None = None
        # Held while a command goes out on the pub/sub and while the reader swaps in a new one:
        # closing a pub/sub under a command in flight broke redis-py inside that command.
        self._pubsub_lock = asyncio.Lock()

    def set_handler(self, handler: BrokerHandler) -> None:
        self._handler = handler

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def _subscribe_all(self) -> None:
        """Control, heartbeat, and every channel this node has subscribers for (a fresh pubsub)."""
        names = (self._keys.pubsub(channel) for channel in self._channels)
        await self._pubsub.subscribe(self._keys.control, self._heartbeat_name, *names)

    async def open(self) -> None:
        await self._subscribe_all()
        self._healthy = True
        self._heard_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever())
        if self._heartbeat is not None:
            self._beater = loop.create_task(self._beat_forever(self._heartbeat))

    async def publish(self, channel: str, offset: int | None, frame: bytes) -> None:
        await self._publish_on(self._redis, channel, _message(offset, frame))

    async def publish_many(self, messages: list[tuple[str, int | None, bytes]]) -> None:
        """One pipeline (on a cluster, redis-py splits it per shard and keeps each shard's order)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, offset, frame in messages:
                self._publish_on(pipe, channel, _message(offset, frame))
            await pipe.execute()

    def _publish_on(self, client: Any, channel: str, message: bytes) -> Any:
        """PUBLISH on a client or queue it in a pipeline (a cluster broker: SPUBLISH)."""
        return client.publish(self._keys.pubsub(channel), message)

    async def publish_control(self, message: bytes) -> None:
        await self._redis.publish(self._keys.control, message)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        async with self._pubsub_lock:
            await self._subscribe_one(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Never raises for a lost connection: the resubscribe after it leaves this channel out."""
        self._channels.discard(channel)
        async with self._pubsub_lock:
            try:
                await self._unsubscribe_one(channel)
            except RedisError as exc:
                log.warning("unsubscribing %s from Redis pub/sub failed (a resubscribe omits it): %s", channel, exc)

    async def _subscribe_one(self, channel: str) -> None:
        await self._pubsub.subscribe(self._keys.pubsub(channel))

    async def _unsubscribe_one(self, channel: str) -> None:
        await self._pubsub.unsubscribe(self._keys.pubsub(channel))

    def resubscribe(self, reason: str) -> bool:
        if self._healthy and self._deaf is None:
            self._deaf = reason
        return True  # now, or when the reader reconnects (it is not reading until then)

    async def _beat_forever(self, heartbeat: Heartbeat) -> None:
        """Publish a heartbeat every interval (on the command connection); past `timeout` without
        hearing one back while healthy, have the reader resubscribe."""
        while True:
            await asyncio.sleep(heartbeat.interval)  # the heartbeat's own clock
            if self._healthy and time.monotonic() - self._heard_at > heartbeat.timeout:
                log.warning("heard nothing from Redis pub/sub for %.1f s: resubscribing", heartbeat.timeout)
                self._deaf = "heartbeat"
            with contextlib.suppress(RedisError):  # Redis down: the reader's reconnect handles it
                await self._redis.publish(self._heartbeat_name, b"%f" % time.time())

    async def _read_forever(self) -> None:
        while True:
            if self._deaf is not None:
                reason, self._deaf = self._deaf, None
                await self._reconnect(None, reason)
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                # Hand over everything already received before waiting again, so publications that
                # arrive together fan out in one loop turn and each outbox coalesces them.
                while message is not None:
                    self._hand_over(message)
                    message = await self._pubsub.get_message(timeout=0)  # None when nothing is buffered
            except RedisError as exc:
                await self._reconnect(exc, "connection_lost")
            except Exception as exc:  # redis-py in a state we did not foresee: a fresh pub/sub, not a dead reader
                log.exception("reading Redis pub/sub failed: resubscribing")
                await self._reconnect(exc, "connection_lost")

    def _hand_over(self, message: dict[str, Any]) -> None:
        """Dispatch one message; one the hub fails on is logged and dropped, and the reader goes
        on (a resubscribe would replay it, and fail again)."""
        try:
            self._dispatch(message)
        except Exception:
            log.exception("handing over a Redis pub/sub message failed (dropped)")

    def _dispatch(self, message: dict[str, Any]) -> None:
        name, payload = message["channel"], message["data"]
        if name == self._heartbeat_name.encode():
            self._heard_at = time.monotonic()
            return
        if self._handler is None:
            return
        if name == self._control_name:
            self._handler.on_control(payload)
            return
        channel = self._channel_of(name)
        if channel is not None:
            head, _, frame = payload.partition(b"\n")
            offset = None if head == b"-" else int(head)
            self._handler.on_channel_message(channel, offset, frame)

    def _channel_of(self, name: bytes) -> str | None:
        """The hubbub channel a pub/sub message came through, or None for another name."""
        if name.startswith(self._pubsub_prefix):
            return name[len(self._pubsub_prefix) :].decode()
        return None

    async def _reconnect(self, error: Exception | None, reason: str) -> None:
        """Report not-ready, resubscribe with exponential backoff and full jitter, let the hub
        replay what was missed meanwhile, then report ready again."""
        self._set_health(False)
        log.warning("lost Redis pub/sub (%s): %s", reason, error or "resubscribing")
        attempt = 0
        while True:
            await asyncio.sleep(secrets.SystemRandom().uniform(0, min(10.0, 0.1 * 2**attempt)))
            attempt += 1
            try:
                async with self._pubsub_lock:
                    await self._stop_readers()
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # redis-py before 8.2 left it unannotated
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await self._subscribe_all()
            except (RedisError, OSError) as exc:
                log.warning("Redis still unavailable: %s", exc)
                continue
            break
        self._heard_at = time.monotonic()
        attempt = 0
        while self._handler is not None:  # replaying the gap needs history: retry until it answers
            try:
                await self._handler.on_resubscribed(reason)
                break
            except Exception as exc:
                log.warning("replaying what was missed failed (retrying): %s", exc)
                await asyncio.sleep(secrets.SystemRandom().uniform(0, min(5.0, 0.1 * 2**attempt)))
                attempt += 1
        # The reader heard nothing while it replayed (it was replaying): a replay longer than the
        # heartbeat's timeout must not count as silence, or every slow replay starts another.
        self._heard_at = time.monotonic()
        self._set_health(True)

    async def _stop_readers(self) -> None:
        """End every task reading the pub/sub before it is closed (here, the one reader is the
        caller); a cluster broker's shard readers must not outlive it."""

    async def wait_health(self, healthy: bool) -> None:
        """Return once the broker's health is `healthy` (for probes and tests)."""
        while self._healthy != healthy:
            self._health_changed.clear()
            await self._health_changed.wait()

    def _set_health(self, healthy: bool) -> None:
        self._healthy = healthy
        self._health_changed.set()
        if self._on_health is not None:
            self._on_health(healthy)

    async def close(self) -> None:
        for task in (self._reader, self._beater):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # redis-py before 8.2 left it unannotated
        await self._redis.aclose()


class RedisClusterBroker(RedisBroker):
    """Fan-out over a Redis Cluster with sharded pub/sub (Redis 7): a channel's messages go
    through the shard that holds its keys (`{prefix}:{ch:CHANNEL}:pubsub`, SPUBLISH/SSUBSCRIBE),
    so a publication touches one shard, not every node of the cluster. The node keeps one pub/sub
    connection per master it has subscribers on, each with its reader (`ShardSubscriptions`).
    When a slot moves (resharding, failover) Redis drops its shard subscribers, sometimes without
    a word, so the broker also compares its subscriptions with the slot map every few seconds and,
    when one moved, resubscribes and lets the hub replay the gap. The control channel and the
    heartbeat stay on classic pub/sub, which a cluster broadcasts to every node.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "hubbub",
        on_health: Callable[[bool], None] | None = None,
        options: RedisOptions = DEFAULT_OPTIONS,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        super().__init__(url, prefix, on_health, options, heartbeat)
        self._options = options
        self._shard_prefix = f"{prefix}:{{ch:".encode()
        self._shards: ShardSubscriptions | None = None  # a resubscribe replaces it
        self._watcher: asyncio.Task[None] | None = None

    @property
    def _cluster(self) -> RedisCluster:
        assert isinstance(self._redis, RedisCluster)
        return self._redis

    async def open(self) -> None:
        await self._cluster.initialize()  # the slot map, which routing needs before any command
        await super().open()
        self._watcher = asyncio.get_running_loop().create_task(self._watch_slots())

    async def _subscribe_all(self) -> None:
        await self._cluster.nodes_manager.initialize()  # the slot map now, not when it last changed
        await self._pubsub.subscribe(self._keys.control, self._heartbeat_name)
        self._shards = ShardSubscriptions(self._cluster, self._shard_client, self._hand_over, self.resubscribe)
        for channel in list(self._channels):  # one at a time: a batch across slots would be CROSSSLOT
            await self._shards.subscribe(self._keys.shard_pubsub(channel))

    def _shard_client(self, host: str, port: int) -> Redis:
        """A master's pub/sub client: its own connection, and no retries, so a failure reaches
        the reader (which resubscribes and replays) instead of a quiet reconnect losing messages."""
        return Redis(
            host=host,
            port=port,
            socket_connect_timeout=self._options.connect_timeout,
            socket_timeout=self._options.socket_timeout,
            health_check_interval=math.ceil(self._options.health_check_interval),  # redis-py takes whole seconds
            retry=Retry(NoBackoff(), 0),
        )

    def _publish_on(self, client: Any, channel: str, message: bytes) -> Any:
        return client.spublish(self._keys.shard_pubsub(channel), message)

    async def _subscribe_one(self, channel: str) -> None:
        assert self._shards is not None
        await self._shards.subscribe(self._keys.shard_pubsub(channel))

    async def _unsubscribe_one(self, channel: str) -> None:
        assert self._shards is not None
        await self._shards.unsubscribe(self._keys.shard_pubsub(channel))

    def _channel_of(self, name: bytes) -> str | None:
        if name.startswith(self._shard_prefix) and name.endswith(b"}:pubsub"):
            return name[len(self._shard_prefix) : -len(b"}:pubsub")].decode()
        return None

    async def _watch_slots(self) -> None:
        """Every few seconds, compare where each channel is subscribed with where the cluster
        says its slot lives now: a moved slot's subscription may be dropped by Redis without a
        word to us (Redis 7.0), so resubscribe and replay."""
        while True:
            await asyncio.sleep(SLOT_CHECK)  # the slot map's check clock
            if not self._healthy or self._deaf is not None or self._shards is None:
                continue
            try:
                await self._cluster.nodes_manager.initialize()
            except RedisError as exc:
                log.warning("refreshing the cluster's slot map failed: %s", exc)
                continue
            if self._shards.moved():
                log.info("a subscribed channel's slot moved to another shard: resubscribing")
                self.resubscribe("slot_moved")

    def _home_of(self, channel: str) -> str:
        """The shard (node name) the cluster says holds this channel's slot now."""
        node = self._cluster.get_node_from_key(self._keys.shard_pubsub(channel))
        return str(node.name) if node is not None else ""

    async def _stop_readers(self) -> None:
        """End the shard readers and close their connections before the resubscribe makes new ones."""
        if self._shards is not None:
            await self._shards.close()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._stop_readers()
        await super().close()


SLOT_CHECK = 2.0  # seconds between comparisons of a cluster broker's subscriptions with the slot map


def backends_from_url(
    url: str,
    prefix: str,
    presence_ttl: float,
    options: RedisOptions = DEFAULT_OPTIONS,
    heartbeat: Heartbeat | None = None,
    wait: ReplicaWait | None = None,
) -> tuple[RedisBroker, RedisHistory, RedisPresence]:
    broker_type = RedisClusterBroker if is_cluster(url) else RedisBroker
    return (
        broker_type(url, prefix, options=options, heartbeat=heartbeat),
        RedisHistory(url, prefix, options=options, wait=wait, announce=True),
        RedisPresence(url, prefix, presence_ttl, options=options),
    )
