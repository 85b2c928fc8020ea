"""The Redis fixture: a real redis-server (started by bench.process.redis_server) on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.process import REDIS_SERVER, free_port, redis_server

__all__ = ["free_port", "redis_server", "redis_url"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("SKIPPED LOUDLY: no redis-server binary (Debian package redis-server); Redis tests did not run")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
