"""Durable through a failover: three hubbub nodes behind HAProxy over a Redis Cluster with
`redis_wait_replicas = 1`; the master of a busy channel's slot is SIGKILLed mid-stream and its
replica takes over. Publishes fail loudly while no replica can confirm them (the promoted master
has none until the old one returns, as its replica); every acknowledged publication reaches
every client once, in order.

The old master is started again only once its replica has been promoted: back before that, it
would take its slots again with an empty dataset (no persistence here) and its replica would
copy the emptiness, losing acknowledged publications (Redis's doing, not a failover)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from redis.crc import key_slot

from bench.process import ServerProcess, redis_cluster
from hubbub import Client, ClientPublication
from tests.redis_server import free_port, require_redis_server
from tests.scale.test_haproxy import NAMESPACES, haproxy

AFTER_THE_KILL = 60  # acknowledged publications wanted once the new master serves


async def master_of(ports: list[int], slot: int) -> int:
    """The port of the master serving `slot` (CLUSTER SLOTS of any node)."""
    client = Redis(port=ports[0])
    try:
        for start, end, master, *_ in await client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
    finally:
        await client.aclose()
    raise AssertionError(f"no master serves slot {slot}")


async def replica_of(ports: list[int], master: int) -> int:
    """The port of a node replicating `master`."""
    for port in ports:
        client = Redis(port=port)
        try:
            replication = await client.info("replication")
        finally:
            await client.aclose()
        if replication.get("role") == "slave" and int(replication.get("master_port", 0)) == master:
            return port
    raise AssertionError(f"no replica of {master}")


async def is_master(port: int) -> bool:
    client = Redis(port=port)
    try:
        return (await client.info("replication")).get("role") == "master"
    finally:
        await client.aclose()


async def test_acknowledged_publications_survive_the_masters_death(tmp_path: Path) -> None:
    require_redis_server()
    prefix = f"test-{uuid.uuid4().hex}"
    with redis_cluster(tmp_path / "cluster") as cluster:  # its own: this test kills a master
        flags = ("--broker", cluster.url, "--redis-prefix", prefix, "--namespaces", NAMESPACES)
        durable = ("--redis-wait-replicas", "1", "--redis-wait-timeout", "2", "--broker-heartbeat-interval", "0.5")
        async with contextlib.AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(ServerProcess.start(None, *flags, *durable)) for _ in range(3)]
            front = free_port()
            await stack.enter_async_context(haproxy(front, [node.port for node in nodes]))
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)))
            received: list[list[int]] = [[] for _ in range(3)]
            acked: list[int] = []
            caught_up = asyncio.Event()

            def collector(index: int):  # type: ignore[no-untyped-def]
                def on_publication(publication: ClientPublication) -> None:
                    received[index].append(publication.data)
                    if acked and all(set(acked) <= set(r) for r in received):
                        caught_up.set()

                return on_publication

            clients = []
            url = f"ws://127.0.0.1:{front}/connection/websocket"
            async with asyncio.timeout(20):
                for index in range(3):
                    client = Client(url, min_reconnect_delay=0.05, max_reconnect_delay=0.5)
                    await client.connect()  # retries until HAProxy and a node answer
                    await client.subscribe("busy", collector(index))
                    clients.append(client)
            victim = await master_of(list(cluster.processes), key_slot(f"{prefix}:{{ch:busy}}:meta".encode()))
            heir = await replica_of(list(cluster.processes), victim)
            killed_at: int | None = None
            restarted = False
            n = 0
            async with asyncio.timeout(90):
                while killed_at is None or len([a for a in acked if a > killed_at]) < AFTER_THE_KILL:
                    if n == 40:
                        cluster.processes[victim].kill()  # SIGKILL: its replica must take over
                        killed_at = n
                    if killed_at is not None and not restarted and await is_master(heir):
                        cluster.restart(victim)  # back, as the new master's replica: WAIT can succeed
                        restarted = True
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        body = {"channel": "busy", "data": n}
                        async with http.post(f"{nodes[n % 3].api_url}/api/publish", json=body) as response:
                            if response.status == 200:
                                acked.append(n)  # acknowledged: replicated, so it must survive
                                caught_up.clear()  # set again once every client has this one too
                    n += 1
                    await asyncio.sleep(0.02)  # the publisher's steady clock, not synchronisation
            if all(set(acked) <= set(r) for r in received):  # the last ones arrived before their ack
                caught_up.set()
            try:
                await asyncio.wait_for(caught_up.wait(), 30)
            except TimeoutError:
                missing = [sorted(set(acked) - set(r))[:10] for r in received]
                raise AssertionError(f"acknowledged publications missing: {missing}") from None
            for messages in received:
                assert messages == sorted(set(messages))  # once each, in order
                assert set(acked) <= set(messages)  # every acknowledged one
            assert n - len(acked) > 0  # some publishes failed during the failover, loudly (500)
            assert not await is_master(victim)  # it came back as the promoted one's replica
            async with http.get(f"{nodes[0].api_url}/api/history?channel=busy") as response:
                stored = [publication["data"] for publication in (await response.json())["publications"]]
            assert set(acked) <= set(stored)  # the promoted master's history lost none of them
            for client in clients:
                await client.close()
