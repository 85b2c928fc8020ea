"""The Redis fixture: a real redis-server (started by bench.process.redis_server) on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.process import REDIS_SERVER, RedisCluster, free_port, redis_cluster, redis_server

__all__ = ["free_port", "redis_cluster_url", "redis_server", "redis_url", "require_redis_server", "running_cluster"]


def require_redis_server() -> None:
    """Skip, loudly, a test that starts redis-server itself when the binary is missing."""
    if REDIS_SERVER is None:
        pytest.skip("SKIPPED LOUDLY: no redis-server binary (Debian package redis-server); Redis tests did not run")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_redis_server()
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster for the session: 3 masters, 3 replicas (redis-cli --cluster create)."""
    require_redis_server()
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_url(running_cluster: RedisCluster) -> str:
    """redis-cluster://HOST:PORT,... of the session's cluster (seed nodes)."""
    return running_cluster.url
