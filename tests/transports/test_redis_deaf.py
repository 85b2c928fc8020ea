"""A node that stops hearing Redis notices, resubscribes, replays what it missed from history,
and is not ready meanwhile: its pub/sub connection silenced (a proxy drops what Redis sends,
the TCP connection stays up), or killed from Redis with CLIENT KILL (its command connection
stays up). Issue 20; python-socketio #1581 is the failure this prevents."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from msgspec import Raw
from redis.asyncio import Redis

from hubbub.backends import redis_shards
from hubbub.backends.redis import Heartbeat, RedisBroker, RedisClusterBroker, RedisKeys
from hubbub.server import Server
from tests.conftest import OpenRaw, RawClient, StartServer
from tests.tcp_proxy import DeafeningProxy, deafening_proxy

FAST_HEARTBEAT = {"broker_heartbeat_interval": 0.1, "broker_heartbeat_timeout": 0.5}


async def numbers(client: RawClient, count: int) -> list[tuple[int, int]]:
    """(data, offset) of the next `count` publications."""
    found = []
    for _ in range(count):
        publication = await client.next_publication(timeout=10)
        found.append((publication["data"], publication["offset"]))
    return found


async def publish(node: Server, *values: int) -> None:
    assert node.hub is not None
    for value in values:
        await node.hub.publish("news", Raw(b"%d" % value))


async def lose_the_stream(redis_url: str, prefix: str) -> None:
    """Delete the history of `news` and the salt, as a Redis that came back empty would have."""
    keys = RedisKeys(prefix)
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.delete(keys.channel("news", "meta"), keys.channel("news", "stream"), keys.salt) == 3
    finally:
        await redis.aclose()


def watch_health(node: Server) -> list[bool]:
    """Every health change of the node's broker, in order (what /health/ready reports)."""
    assert node.hub is not None
    broker: Any = node.hub.broker
    changes: list[bool] = []
    broker._on_health = changes.append
    return changes


async def test_a_silenced_pubsub_connection_is_noticed_by_the_heartbeat_and_the_gap_replayed(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    async with deafening_proxy(redis_url) as proxy:
        node = await start_server(broker=proxy.url, redis_prefix=prefix, **FAST_HEARTBEAT)
        other = await start_server(broker=redis_url, redis_prefix=prefix)
        client = await open_raw(node)
        await client.ok("subscribe", {"channel": "news"})
        health = watch_health(node)
        await publish(other, 0)
        assert await numbers(client, 1) == [(0, 1)]
        assert proxy.deafen_subscribers() == 1  # the node hears nothing from now on, and is not told
        await publish(other, 1, 2, 3, 4)  # missed: they reach Redis, not the node
        assert await numbers(client, 4) == [(1, 2), (2, 3), (3, 4), (4, 5)]  # replayed from history
        await publish(other, 5)
        assert await numbers(client, 1) == [(5, 6)]  # live again, nothing twice
        assert node.hub is not None
        assert node.hub.stats.broker_resubscribes["heartbeat"] == 1
        assert health == [False, True]  # not ready until the gap was replayed


async def test_client_kill_of_the_pubsub_connection_resubscribes_and_replays(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """CLIENT KILL from Redis while the node's command connection stays up (the heartbeat off:
    the closed connection alone tells it)."""
    prefix = f"test-{uuid.uuid4().hex}"
    async with deafening_proxy(redis_url) as proxy:
        node = await start_server(broker=proxy.url, redis_prefix=prefix, broker_heartbeat_interval=None)
        other = await start_server(broker=redis_url, redis_prefix=prefix)
        client = await open_raw(node)
        await client.ok("subscribe", {"channel": "news"})
        health = watch_health(node)
        proxy.deafen_subscribers()  # so the publications below surely fall into the gap
        await publish(other, 1, 2, 3)
        (address,) = proxy.subscriber_addresses()  # the node's pub/sub connection, as Redis sees it
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.client_kill(address)
        finally:
            await redis.aclose()
        assert await numbers(client, 3) == [(1, 1), (2, 2), (3, 3)]
        assert node.hub is not None and node.hub.stats.broker_resubscribes["connection_lost"] >= 1
        await publish(other, 4)
        assert await numbers(client, 1) == [(4, 4)]
        assert health[:2] == [False, True]
        assert await client.ok("ping") == {}  # the client's connection stayed open throughout


async def test_a_gap_history_cannot_fill_asks_the_subscribers_to_reconnect(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """More missed than recovery_max_publications: the node cannot replay it; its subscribers
    get 3011 and recover (or are told recovered: false) by themselves."""
    prefix = f"test-{uuid.uuid4().hex}"
    async with deafening_proxy(redis_url) as proxy:
        node = await start_server(broker=proxy.url, redis_prefix=prefix, recovery_max_publications=2, **FAST_HEARTBEAT)
        other = await start_server(broker=redis_url, redis_prefix=prefix)
        client = await open_raw(node)
        await client.ok("subscribe", {"channel": "news"})
        proxy.deafen_subscribers()
        await publish(other, 1, 2, 3, 4)
        assert await client.close_code() == 3011
        assert node.hub is not None and node.hub.stats.broker_gaps_unfilled == 1


async def test_a_replay_from_a_stream_that_was_lost_meanwhile_is_no_continuation(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """While the node is deaf, the channel's history is lost (its keys and the salt gone, as in a
    Redis that came back empty) and a new stream grows past what the node delivered. Its offsets
    would fill the gap, but its epoch is new: the subscribers get 3011 and recover by themselves
    (told recovered: false), rather than take the new stream's 2 and 3 for the old one's."""
    prefix = f"test-{uuid.uuid4().hex}"
    async with deafening_proxy(redis_url) as proxy:
        node = await start_server(broker=proxy.url, redis_prefix=prefix, **FAST_HEARTBEAT)
        other = await start_server(broker=redis_url, redis_prefix=prefix)
        client = await open_raw(node)
        epoch = (await client.ok("subscribe", {"channel": "news"}))["epoch"]
        await publish(other, 0)
        assert await numbers(client, 1) == [(0, 1)]
        proxy.deafen_subscribers()
        await lose_the_stream(redis_url, prefix)
        await publish(other, 1, 2, 3)  # offsets 1, 2, 3 of a new stream
        assert await client.close_code() == 3011
        assert node.hub is not None and node.hub.stats.broker_gaps_unfilled == 1
        client = await open_raw(node)
        result = await client.ok("subscribe", {"channel": "news", "since": {"offset": 1, "epoch": epoch}})
        assert result["recovered"] is False and result["epoch"] != epoch


async def test_a_stream_lost_under_a_node_that_hears_is_no_continuation_either(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """The node hears every message, but the channel's history is lost (its keys and the salt
    gone, as after an eviction) and a new stream starts at offset 1, below the subscriber's 3: a
    client that drops repeats by offset would drop the new stream's first three as repeats. The
    node sees history's new epoch for a whole check interval and asks its subscribers to
    reconnect (3011); recovering, they are told `recovered: false`."""
    prefix = f"test-{uuid.uuid4().hex}"
    node = await start_server(broker=redis_url, redis_prefix=prefix, broker_heartbeat_interval=0.1)
    client = await open_raw(node)
    epoch = (await client.ok("subscribe", {"channel": "news"}))["epoch"]
    await publish(node, 0, 1, 2)
    assert await numbers(client, 3) == [(0, 1), (1, 2), (2, 3)]
    await lose_the_stream(redis_url, prefix)
    await publish(node, 10)  # offset 1 of a new stream, heard live
    newcomer = await open_raw(node)  # subscribed to the new stream: must not hide it from the node
    assert (await newcomer.ok("subscribe", {"channel": "news"}))["epoch"] != epoch
    assert await asyncio.wait_for(client.close_code(), 10) == 3011
    assert node.hub is not None and node.hub.stats.broker_resubscribes["stream_restarted"] == 1
    client = await open_raw(node)
    result = await client.ok("subscribe", {"channel": "news", "since": {"offset": 3, "epoch": epoch}})
    assert result["recovered"] is False and result["epoch"] != epoch and result["offset"] == 1


async def test_the_broker_subscribes_the_node_to_its_heartbeat_only(redis_url: str) -> None:
    """Each node hears its own heartbeat, never another's (a fleet's heartbeats cost nothing)."""
    redis = Redis.from_url(redis_url)
    prefix = f"test-{uuid.uuid4().hex}"
    brokers = [RedisBroker(redis_url, prefix, heartbeat=Heartbeat(0.05, 1.0)) for _ in range(2)]
    try:
        for broker in brokers:
            await broker.open()
        channels = await redis.pubsub_channels(f"{prefix}:heartbeat:*")
        assert len(channels) == 2
        counts = await redis.pubsub_numsub(*channels)
        assert all(count == 1 for _, count in counts)
        await asyncio.wait_for(asyncio.gather(*(b.wait_health(True) for b in brokers)), 5)
    finally:
        for broker in brokers:
            await broker.close()
        await redis.aclose()


async def behind_the_proxy(
    start_server: StartServer, open_raw: OpenRaw, proxy: DeafeningProxy, redis_url: str, settings: dict[str, float]
) -> tuple[Server, Server, RawClient]:
    """A node reaching Redis through the proxy, another reaching it directly (they share a prefix),
    and a client of the first subscribed to `news`."""
    prefix = f"test-{uuid.uuid4().hex}"
    node = await start_server(broker=proxy.url, redis_prefix=prefix, **settings)
    other = await start_server(broker=redis_url, redis_prefix=prefix)
    client = await open_raw(node)
    await client.ok("subscribe", {"channel": "news"})
    return node, other, client


async def test_history_ahead_of_what_the_node_delivered_makes_it_resubscribe(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """The heartbeat still heard (or too slow to tell): publications sitting in history for a
    whole check interval that never arrived are enough."""
    async with deafening_proxy(redis_url) as proxy:
        settings = {"broker_heartbeat_interval": 0.2, "broker_heartbeat_timeout": 600.0}
        node, other, client = await behind_the_proxy(start_server, open_raw, proxy, redis_url, settings)
        proxy.deafen_subscribers()
        await publish(other, 1, 2)
        assert await numbers(client, 2) == [(1, 1), (2, 2)]
        assert node.hub is not None and node.hub.stats.broker_resubscribes["stream_ahead"] == 1
        assert node.hub.stats.broker_resubscribes["heartbeat"] == 0


async def test_a_gap_heard_before_anything_noticed_it_is_replayed_first(
    start_server: StartServer, open_raw: OpenRaw, redis_url: str
) -> None:
    """Deaf for a moment and hearing again before the heartbeat or the delivery check noticed
    (both far slower than this test): the next publication the node hears skips offsets. Clients
    would take the jump (they drop only repeats); the node resubscribes and replays the missed
    ones from history first, in order."""
    async with deafening_proxy(redis_url) as proxy:
        settings = {"broker_heartbeat_interval": 300.0, "broker_heartbeat_timeout": 600.0}
        node, other, client = await behind_the_proxy(start_server, open_raw, proxy, redis_url, settings)
        await publish(other, 0)
        assert await numbers(client, 1) == [(0, 1)]
        proxy.deafen_subscribers()
        await publish(other, 1, 2)
        await proxy.wait_dropped(b'"offset":3')  # both gone, not merely late
        proxy.hear_again()
        await publish(other, 3)
        assert await numbers(client, 3) == [(1, 2), (2, 3), (3, 4)]
        assert node.hub is not None and node.hub.stats.broker_resubscribes["stream_gap"] == 1


class SlowReplay:
    """A hub whose replay after a resubscribe lasts `seconds` (longer than the heartbeat's
    timeout), with the pub/sub connections silenced meanwhile when a `proxy` is given: what
    Redis sends during a replay is heard only after it, if at all."""

    def __init__(self, seconds: float, proxy: DeafeningProxy | None = None) -> None:
        self.seconds = seconds
        self.proxy = proxy
        self.replays: list[str] = []
        self.replayed = asyncio.Event()
        self.heard = asyncio.Event()

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        self.heard.set()

    def on_control(self, message: bytes) -> None:
        """Nor control messages."""

    async def on_resubscribed(self, reason: str) -> None:
        self.replays.append(reason)
        self.replayed.set()
        if self.proxy is not None:
            self.proxy.silence_subscribers()
        await asyncio.sleep(self.seconds)  # the replay's own duration: reading a long history
        if self.proxy is not None:
            self.proxy.hear_again()


async def test_a_replay_slower_than_the_heartbeat_timeout_is_not_taken_for_silence(redis_url: str) -> None:
    """The reader hears nothing while it replays; that must not start another resubscribe (which
    would replay again, and again, for as long as replays stay slow)."""
    async with deafening_proxy(redis_url) as proxy:
        broker = RedisBroker(proxy.url, f"test-{uuid.uuid4().hex}", heartbeat=Heartbeat(0.05, 0.3))
        handler = SlowReplay(0.9, proxy)
        broker.set_handler(handler)
        await broker.open()
        try:
            await broker.subscribe("news")
            await broker.publish("news", None, b"{}")
            await asyncio.wait_for(handler.heard.wait(), 5)  # through the proxy, both ways
            assert proxy.deafen_subscribers() == 1
            await asyncio.wait_for(broker.wait_health(False), 5)
            await asyncio.wait_for(broker.wait_health(True), 10)
            with pytest.raises(TimeoutError):  # a second resubscribe would come within a beat or two
                await asyncio.wait_for(broker.wait_health(False), 1.5)
            assert handler.replays == ["heartbeat"]
        finally:
            await broker.close()


async def subscribed_names(url: str, prefix: str) -> set[bytes]:
    """The pub/sub names subscribed under `prefix`: classic channels, and on a cluster the shard
    channels of every node."""
    if not url.startswith("redis-cluster://"):
        redis = Redis.from_url(url)
        try:
            return {
                name if isinstance(name, bytes) else name.encode()
                for name in await redis.pubsub_channels(f"{prefix}:pubsub:*")
            }
        finally:
            await redis.aclose()
    names: set[bytes] = set()
    for address in url.split("//", 1)[1].split(","):
        host, _, port = address.partition(":")
        node = Redis(host=host, port=int(port))
        try:
            names |= set(await node.execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}:*"))
        finally:
            await node.aclose()
    return names


@pytest.mark.parametrize("backend", ["redis_url", "redis_cluster_url"])
async def test_subscriptions_changing_while_the_broker_resubscribes_fail_nothing(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Sessions come and go while the reader swaps in a new pub/sub connection: every subscribe
    and unsubscribe returns, and Redis ends up with exactly the channels still wanted."""
    url = request.getfixturevalue(backend)  # one Redis, or a Redis Cluster
    prefix = f"test-{uuid.uuid4().hex}"
    broker = RedisClusterBroker(url, prefix) if backend == "redis_cluster_url" else RedisBroker(url, prefix)
    handler = SlowReplay(0)
    broker.set_handler(handler)
    await broker.open()

    async def churn(name: str) -> None:
        for _ in range(100):
            await broker.subscribe(name)
            await broker.unsubscribe(name)

    try:
        await broker.subscribe("kept")
        for _ in range(5):
            handler.replayed.clear()
            broker.resubscribe("test")
            await broker.publish_control(b"wake the reader")  # it resubscribes on its next message
            await asyncio.gather(*(churn(f"churn-{index}") for index in range(8)))
            await asyncio.wait_for(handler.replayed.wait(), 10)  # this round's resubscribe happened
            await asyncio.wait_for(broker.wait_health(True), 10)  # and the next round's is taken
        kept = RedisKeys(prefix).shard_pubsub("kept") if backend == "redis_cluster_url" else f"{prefix}:pubsub:kept"
        assert await subscribed_names(url, prefix) == {kept.encode()}
        assert handler.replays == ["test"] * 5  # the churn itself started no resubscribe
    finally:
        await broker.close()


async def test_a_cluster_resubscribe_ends_the_shard_readers_and_their_connections(redis_cluster_url: str) -> None:
    """A resubscribe ends every shard's reader and closes its connection before it makes new
    ones: no reader outlives its pub/sub (two coroutines reading one socket is what asyncio
    refuses), and the new readers, one per master, carry the publications."""
    broker = RedisClusterBroker(redis_cluster_url, f"test-{uuid.uuid4().hex}")
    handler = SlowReplay(0)
    broker.set_handler(handler)
    await broker.open()
    try:
        for index in range(12):  # channels on every shard
            await broker.subscribe(f"room-{index}")
        old = broker._shards
        assert old is not None
        readers = old.readers
        assert len(readers) == len({broker._home_of(f"room-{index}") for index in range(12)}) > 1
        connections = [shard.pubsub.connection for shard in old._shards.values()]
        broker.resubscribe("test")
        await broker.publish_control(b"wake the reader")
        await asyncio.wait_for(handler.replayed.wait(), 10)
        assert all(reader.done() for reader in readers)
        assert all(connection is not None and not connection.is_connected for connection in connections)
        new = broker._shards
        assert new is not None and new is not old and len(new.readers) == len(readers)
        handler.heard.clear()
        await broker.publish("room-0", None, b"{}")  # the new readers read
        await asyncio.wait_for(handler.heard.wait(), 10)
        assert handler.replays == ["test"]
    finally:
        await broker.close()


async def test_a_shard_subscribe_does_not_wait_for_the_shards_reader(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard's reader waits in its read for the next message; a subscribe or unsubscribe on
    that shard goes out meanwhile. redis-py 8.2's cluster pub/sub made each wait for the read to
    time out (up to a second each, one after another): a reconnect storm's subscribes queued
    for minutes (forty of these took 21 s). Here a reader's wait is a minute, and forty commands
    must not notice it."""
    monkeypatch.setattr(redis_shards, "POLL", 60.0)
    broker = RedisClusterBroker(redis_cluster_url, f"test-{uuid.uuid4().hex}")
    handler = SlowReplay(0)
    broker.set_handler(handler)
    await broker.open()
    try:
        await broker.subscribe("first")  # its shard's reader is now waiting

        async def come_and_go() -> None:
            for index in range(20):  # channels of every shard
                await broker.subscribe(f"room-{index}")
                await broker.unsubscribe(f"room-{index}")

        await asyncio.wait_for(come_and_go(), 10)
        await broker.publish("first", None, b"{}")  # and the reader still reads
        await asyncio.wait_for(handler.heard.wait(), 10)
        assert (broker.healthy, broker._deaf, handler.replays) == (True, None, [])
    finally:
        await broker.close()


async def test_a_killed_shard_connection_resubscribes_and_replays(redis_cluster_url: str) -> None:
    """CLIENT KILL of a shard's pub/sub connection on its master: the reader reports it and the
    broker resubscribes and replays (reason connection_lost), rather than redis-py reconnecting
    that connection quietly and losing what was published meanwhile."""
    broker = RedisClusterBroker(redis_cluster_url, f"test-{uuid.uuid4().hex}")
    handler = SlowReplay(0)
    broker.set_handler(handler)
    await broker.open()
    try:
        await broker.subscribe("news")
        shards: Any = broker._shards
        home = broker._home_of("news")
        host, port = shards._shards[home].pubsub.connection._writer.get_extra_info("sockname")[:2]
        master_host, _, master_port = home.rpartition(":")
        master = Redis(host=master_host, port=int(master_port))
        try:
            assert await master.client_kill(f"{host}:{port}")
        finally:
            await master.aclose()
        await asyncio.wait_for(handler.replayed.wait(), 10)
        await asyncio.wait_for(broker.wait_health(True), 10)
        assert handler.replays == ["connection_lost"]
        handler.heard.clear()
        await broker.publish("news", None, b"{}")  # heard on the new connection
        await asyncio.wait_for(handler.heard.wait(), 10)
    finally:
        await broker.close()


class FailsOn(SlowReplay):
    """A hub that fails on one payload (a bug of ours, say) and records the others."""

    def __init__(self, poison: bytes) -> None:
        super().__init__(0)
        self.poison = poison
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        if frame == self.poison:
            raise RuntimeError("the hub failed on this one")
        self.frames.append(frame)
        self.arrived.set()


@pytest.mark.parametrize("backend", ["redis_url", "redis_cluster_url"])
async def test_a_message_the_hub_fails_on_is_dropped_and_the_reader_goes_on(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue(backend)
    prefix = f"test-{uuid.uuid4().hex}"
    broker = RedisClusterBroker(url, prefix) if backend == "redis_cluster_url" else RedisBroker(url, prefix)
    handler = FailsOn(b"poison")
    broker.set_handler(handler)
    await broker.open()
    try:
        await broker.subscribe("news")
        for frame in (b"one", b"poison", b"two"):
            await broker.publish("news", None, frame)
        while handler.frames != [b"one", b"two"]:
            handler.arrived.clear()
            await asyncio.wait_for(handler.arrived.wait(), 5)
        assert handler.replays == []  # dropped, not resubscribed (a replay would fail on it again)
    finally:
        await broker.close()
