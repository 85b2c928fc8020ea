"""The Redis fixture: a real redis-server (started by bench.process.redis_server) on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.process import REDIS_SERVER, free_port, redis_server

__all__ = ["free_port", "redis_server", "redis_url", "require_redis_server"]


def require_redis_server() -> None:
    """Skip, loudly, a test that starts redis-server itself when the binary is missing."""
    if REDIS_SERVER is None:
        pytest.skip("SKIPPED LOUDLY: no redis-server binary (Debian package redis-server); Redis tests did not run")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_redis_server()
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
