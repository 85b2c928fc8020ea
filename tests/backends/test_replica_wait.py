"""redis_wait_replicas: a publication is acknowledged only once replicas hold it (WAIT on the
connection that wrote it); fewer within redis_wait_timeout is an error, never a silent risk."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hubbub.backends.base import Append
from hubbub.backends.redis import NotReplicated, RedisHistory, ReplicaWait
from tests.redis_server import free_port, redis_server, require_redis_server


async def replica_caught_up(replica_url: str) -> None:
    replica = Redis.from_url(replica_url)
    try:
        async with asyncio.timeout(10):
            while True:  # polling a process we started until it has synced (bounded)
                if (await replica.info("replication")).get("master_link_status") == "up":
                    return
                await asyncio.sleep(0.05)
    finally:
        await replica.aclose()


async def test_an_acknowledged_append_is_on_the_replica_and_one_without_replicas_fails(tmp_path: Path) -> None:
    require_redis_server()
    prefix = f"test-{uuid.uuid4().hex}"
    with redis_server(tmp_path / "master", free_port()) as master:
        history = RedisHistory(master, prefix, wait=ReplicaWait(replicas=1, timeout=0.5))
        try:
            with redis_server(tmp_path / "replica", free_port(), replica_of=master) as replica_url:
                await replica_caught_up(replica_url)
                top = await history.append("news", b'"one"', None, size=10, ttl=60)
                tops = await history.append_many([Append("news", b'"two"', None, 10, 60)])
                replica = Redis.from_url(replica_url)
                try:  # read from the replica itself: what a failover would promote
                    entries = await replica.xrange(f"{prefix}:{{ch:news}}:stream")
                finally:
                    await replica.aclose()
                assert [entry_id for entry_id, _ in entries or []] == [b"1-0", b"2-0"]
                assert (top.offset, tops[0].offset) == (1, 2)
            # The replica is gone: an append cannot be acknowledged in time, and says so.
            with pytest.raises(NotReplicated):
                await history.append("news", b'"three"', None, size=10, ttl=60)
            with pytest.raises(NotReplicated):
                await history.append_many([Append("news", b'"four"', None, 10, 60)])
        finally:
            await history.close()
