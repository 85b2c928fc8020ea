"""Two nodes behind nginx (deploy/nginx.conf): WebSocket upgrade, cross-node delivery, health."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from bench.process import ServerProcess
from hubbub import Client
from tests.redis_server import free_port

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_PRESENT = os.path.exists(NGINX)


@contextlib.asynccontextmanager
async def nginx(  # type: ignore[no-untyped-def]
    folder: Path, bind_port: int, node_ports: list[int], edit: Callable[[str], str] = lambda config: config
):
    """deploy/nginx.conf in front of the nodes; `edit` changes it first (a proxy that breaks upgrades)."""
    if not NGINX_PRESENT:
        pytest.fail("nginx is missing: install Debian's nginx package (.ci/run does)")
    (folder / "tmp").mkdir(parents=True)
    config = edit(TEMPLATE.read_text()).replace("{{BIND}}", f"127.0.0.1:{bind_port}")
    for number, port in enumerate(node_ports, start=1):
        config = config.replace(f"{{{{NODE{number}}}}}", f"127.0.0.1:{port}")
    (folder / "nginx.conf").write_text(config)
    process = await asyncio.create_subprocess_exec(
        NGINX,
        "-p",
        str(folder),
        "-c",
        str(folder / "nginx.conf"),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()  # the process this test started, by its handle
        await process.wait()


async def test_two_nodes_behind_nginx(redis_url: str, tmp_path: Path) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(ServerProcess.start(None, "--broker", redis_url, "--redis-prefix", prefix))
            for _ in range(2)
        ]
        front = free_port()
        await stack.enter_async_context(nginx(tmp_path / "nginx", front, [node.port for node in nodes]))
        url = f"ws://127.0.0.1:{front}/connection/websocket"
        async with asyncio.timeout(20):
            clients = []
            for _ in range(4):
                client = Client(url, min_reconnect_delay=0.05, max_reconnect_delay=0.5)
                await client.connect()  # retries until nginx listens
                clients.append(client)
            subscriptions = [await client.subscribe("news") for client in clients]
            await clients[0].publish("news", {"via": "nginx"})
            for subscription in subscriptions:
                assert (await anext(subscription)).data == {"via": "nginx"}
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{front}/health") as response:
                    assert response.status == 200
                spread = []
                for node in nodes:
                    async with http.get(f"{node.api_url}/api/info") as response:
                        spread.append((await response.json())["connections"])
            assert sum(spread) == 4 and min(spread) >= 1, spread  # least_conn used both nodes
        for client in clients:
            await client.close()
