"""Broker contract, over memory (one node) and Redis (several nodes): order, reach, reconnect.

A broker delivers each message published to a channel once to every node subscribed to it, in
publish order, and control messages to every node (backends/base.py, `Broker`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.backends.base import Broker
from hubbub.backends.memory import MemoryBroker
from tests.redis_server import free_port, redis_server, require_redis_server


class Recorder:
    """A node's hub, as the broker sees it: what arrived, in order."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.resubscribed: list[str] = []

    def on_channel_message(self, channel: str, offset: int | None, frame: bytes) -> None:
        self.messages.put_nowait((channel, offset, frame))

    async def on_resubscribed(self, reason: str) -> None:
        self.resubscribed.append(reason)

    def on_control(self, message: bytes) -> None:
        self.messages.put_nowait(("control", message))

    async def take(self, count: int) -> list[tuple[Any, ...]]:
        return [await asyncio.wait_for(self.messages.get(), 5) for _ in range(count)]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """`await cluster(n)`: n nodes sharing one broker (memory: only ever one node)."""
    opened: list[Broker] = []
    prefix = f"test-{uuid.uuid4().hex}"

    async def start(count: int) -> list[tuple[Broker, Recorder]]:
        if request.param == "memory" and count > 1:
            pytest.skip("the memory broker serves one node")
        nodes: list[tuple[Broker, Recorder]] = []
        for _ in range(count):
            broker: Broker
            if request.param == "memory":
                broker = MemoryBroker()
            elif request.param == "redis":
                from hubbub.backends.redis import RedisBroker

                broker = RedisBroker(request.getfixturevalue("redis_url"), prefix)
            else:
                from hubbub.backends.redis import RedisClusterBroker

                broker = RedisClusterBroker(request.getfixturevalue("redis_cluster_url"), prefix)
            recorder = Recorder()
            broker.set_handler(recorder)
            await broker.open()
            assert broker.healthy
            opened.append(broker)
            nodes.append((broker, recorder))
        return nodes

    yield start
    for broker in opened:
        await broker.close()


async def test_publications_arrive_in_publish_order(cluster: Any) -> None:
    """Singles and batches of one channel reach a subscribed node in the order they were published."""
    [(broker, recorder)] = await cluster(1)
    await broker.subscribe("news")
    for offset in range(1, 31):
        await broker.publish("news", offset, b"%d" % offset)
    await broker.publish_many([("news", offset, b"%d" % offset) for offset in range(31, 61)])
    await broker.publish("news", None, b"join")
    received = await recorder.take(61)
    assert received[:60] == [("news", n, b"%d" % n) for n in range(1, 61)]
    assert received[60] == ("news", None, b"join")


async def test_control_messages_reach_every_node(cluster: Any) -> None:
    nodes = await cluster(1)
    await nodes[0][0].publish_control(b'{"kind":"message"}')
    assert await nodes[0][1].take(1) == [("control", b'{"kind":"message"}')]


async def test_each_subscribed_node_gets_each_publication_once_and_no_other_node_does(cluster: Any) -> None:
    (first, one), (second, two), (third, three) = await cluster(3)
    await second.subscribe("news")
    await third.subscribe("news")
    await first.publish("news", 1, b"a")
    await first.publish_many([("news", 2, b"b"), ("elsewhere", None, b"not for them")])
    await second.publish_control(b"everyone")
    for recorder in (two, three):
        assert await recorder.take(3) == [("news", 1, b"a"), ("news", 2, b"b"), ("control", b"everyone")]
    assert await one.take(1) == [("control", b"everyone")]  # node 1 never subscribed to news
    await third.unsubscribe("news")
    await first.publish("news", 3, b"c")
    await first.publish_control(b"fence")  # after it, nothing more can come for node 3
    assert await two.take(2) == [("news", 3, b"c"), ("control", b"fence")]
    assert await three.take(1) == [("control", b"fence")]
    assert await one.take(1) == [("control", b"fence")]  # each node gets control messages in its own time
    assert three.messages.empty()


async def test_redis_broker_reconnects_and_resubscribes_after_an_outage(tmp_path: Path) -> None:
    """Redis goes away and comes back on the same port: the broker says it is unhealthy meanwhile,
    then delivers again on the channels it was subscribed to, without being asked."""
    require_redis_server()
    from hubbub.backends.redis import RedisBroker

    port = free_port()
    with redis_server(tmp_path / "first", port) as url:
        broker, publisher = RedisBroker(url, "outage"), RedisBroker(url, "outage")
        recorder = Recorder()
        broker.set_handler(recorder)
        publisher.set_handler(Recorder())
        await broker.open()
        await publisher.open()
        await broker.subscribe("news")
        await publisher.publish("news", 1, b"before")
        assert await recorder.take(1) == [("news", 1, b"before")]
    try:
        await asyncio.wait_for(broker.wait_health(False), 10)
        assert not broker.healthy
        with redis_server(tmp_path / "second", port):
            await asyncio.wait_for(broker.wait_health(True), 30)
            async with asyncio.timeout(30):  # the publisher's own connection comes back on use
                while True:
                    try:
                        await publisher.publish("news", 2, b"after")
                        break
                    except Exception:  # redis-py raises several kinds while it reconnects
                        await asyncio.sleep(0.1)  # a retry interval, not synchronisation
            assert await recorder.take(1) == [("news", 2, b"after")]
    finally:
        await broker.close()
        await publisher.close()
