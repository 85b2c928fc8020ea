"""Redis Cluster specifics (the contract suites run on it too): a publication touches one shard,
a channel's subscription follows its slot when the slot moves to another master, and a slot
that loses its data gives its channels new epochs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from bench.process import RedisCluster
from hubbub.backends.base import StreamTop
from hubbub.backends.redis import RedisClusterBroker, RedisHistory, RedisKeys, seed_nodes
from tests.backends.test_broker_contract import Recorder


async def masters(cluster: RedisCluster) -> dict[str, Redis]:
    """node id -> a client of each master."""
    found = {}
    for port in cluster.processes:
        client = Redis(port=port)
        role = await client.execute_command("ROLE")
        if role[0] == b"master":
            node_id = (await client.execute_command("CLUSTER", "MYID")).decode()
            found[node_id] = client
        else:
            await client.aclose()
    return found


async def spublish_counts(clients: dict[str, Redis]) -> dict[str, int]:
    counts = {}
    for node_id, client in clients.items():
        stats: dict[str, Any] = await client.info("commandstats")
        counts[node_id] = int(stats.get("cmdstat_spublish", {}).get("calls", 0))
    return counts


async def opened(url: str, prefix: str) -> tuple[RedisClusterBroker, Recorder]:
    broker = RedisClusterBroker(url, prefix)
    recorder = Recorder()
    broker.set_handler(recorder)
    await broker.open()
    return broker, recorder


async def test_a_publication_touches_only_its_channels_shard(running_cluster: RedisCluster) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    clients = await masters(running_cluster)
    (publisher, _), (subscriber, recorder) = [await opened(running_cluster.url, prefix) for _ in range(2)]
    try:
        await subscriber.subscribe("news")
        before = await spublish_counts(clients)
        for n in range(20):
            await publisher.publish("news", n + 1, b"%d" % n)
        assert [offset for _, offset, _ in await recorder.take(20)] == list(range(1, 21))
        grown = {node: count - before[node] for node, count in (await spublish_counts(clients)).items()}
        assert sorted(grown.values()) == [0, 0, 20], grown  # one shard saw them, the two others nothing
    finally:
        for broker in (publisher, subscriber):
            await broker.close()
        for client in clients.values():
            await client.aclose()


async def move_slot(cluster_url: str, clients: dict[str, Redis], slot: int) -> tuple[str, str]:
    """Migrate one slot (and its keys) to another master, as resharding does; (from, to) ids."""
    admin = ClusterClient(startup_nodes=seed_nodes(cluster_url))
    await admin.initialize()
    source_node = admin.nodes_manager.get_node_from_slot(slot)
    port_of = {node_id: client.connection_pool.connection_kwargs["port"] for node_id, client in clients.items()}
    source = next(node_id for node_id, port in port_of.items() if port == source_node.port)
    target = next(node_id for node_id in clients if node_id != source)
    target_port = port_of[target]
    await clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source)
    await clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target)
    while keys := await clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        await clients[source].execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for client in clients.values():
        await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target)
    await admin.aclose()
    return source, target


async def test_a_subscription_follows_its_slot_to_another_master(running_cluster: RedisCluster) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    clients = await masters(running_cluster)
    (publisher, _), (subscriber, recorder) = [await opened(running_cluster.url, prefix) for _ in range(2)]
    try:
        await subscriber.subscribe("moving")
        await publisher.publish("moving", 1, b"before")
        assert await recorder.take(1) == [("moving", 1, b"before")]
        slot = key_slot(f"{prefix}:{{ch:moving}}:pubsub".encode())
        await move_slot(running_cluster.url, clients, slot)
        received: list[bytes] = []
        async with asyncio.timeout(20):
            while b"after" not in received:  # the publisher follows MOVED; the subscriber re-homes
                await publisher.publish("moving", 2, b"after")
                with contextlib.suppress(TimeoutError):
                    received.append((await asyncio.wait_for(recorder.messages.get(), 0.5))[2])
        await publisher.publish("moving", 3, b"still")
        async with asyncio.timeout(5):
            while (await recorder.messages.get())[2] != b"still":
                pass  # extra copies of "after" from the retries above
    finally:
        for broker in (publisher, subscriber):
            await broker.close()
        for client in clients.values():
            await client.aclose()


async def test_a_slot_that_loses_its_data_gives_its_channels_new_epochs(running_cluster: RedisCluster) -> None:
    """A master without persistence restarted before its replica took over comes back empty and
    the replica copies that. Its slots' salts go with their streams, so those channels' epochs
    change and clients recovering across the loss are told `recovered: false`, though the other
    shards (and whatever salt they hold) kept everything."""
    prefix = f"test-{uuid.uuid4().hex}"
    history = RedisHistory(running_cluster.url, prefix)
    await history.open()
    clients = await masters(running_cluster)
    try:
        slot = key_slot(f"{prefix}:{{ch:room}}:meta".encode())
        elsewhere = next(f"other{n}" for n in range(100) if key_slot(f"{prefix}:{{ch:other{n}}}:meta".encode()) != slot)
        before = await history.append("room", b"1", None, size=10, ttl=60)
        kept = await history.append(elsewhere, b"1", None, size=10, ttl=60)
        lost = 0
        for client in clients.values():  # every key of ours in the slot: what an emptied master lost
            keys = await client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
            ours = [key for key in keys if key.startswith(prefix.encode())]
            if ours:
                lost += await client.delete(*ours)
        assert lost >= 2  # the stream and its meta, at least
        after = (await history.read("room")).top
        assert after.offset == 0 and after.epoch != before.epoch
        assert await history.append("room", b"2", None, size=10, ttl=60) == StreamTop(1, after.epoch)
        assert await history.top(elsewhere) == kept  # other slots keep their streams and epochs
    finally:
        await history.close()
        for client in clients.values():
            await client.aclose()


def test_a_channels_slot_salt_lives_in_the_channels_slot() -> None:
    """The scripts read the salt beside the stream: a cluster refuses a script that reaches a key
    in another slot, and a salt elsewhere would survive the loss of the slot it stands for."""
    keys = RedisKeys("hubbub")
    for channel in [f"room:{n}" for n in range(3000)] + ["", "{odd}", "ch:é"]:
        assert key_slot(keys.slot_salt(channel).encode()) == key_slot(keys.channel(channel, "meta").encode())
