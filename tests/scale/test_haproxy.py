"""Three nodes behind HAProxy (deploy/haproxy.cfg), one Redis; one node is killed mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path

import aiohttp
import pytest

from bench.process import ServerProcess
from hubbub import Client, ClientPublication
from tests.redis_server import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HAPROXY_PRESENT = os.path.exists(HAPROXY)
TOTAL = 300
# History long enough to cover the outage: recovery must not depend on how fast clients come back.
NAMESPACES = '{"default": {"history_size": 1000, "history_ttl": 600, "presence": true, "publish": "anyone"}}'


@contextlib.asynccontextmanager
async def haproxy(bind_port: int, node_ports: list[int]):  # type: ignore[no-untyped-def]
    if not HAPROXY_PRESENT:
        pytest.fail("haproxy is missing: install Debian's haproxy package (.ci/run does)")
    env = {**os.environ, "HUBBUB_BIND": f"127.0.0.1:{bind_port}"}
    for number, port in enumerate(node_ports, start=1):
        env[f"HUBBUB_NODE{number}"] = f"127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        HAPROXY,
        "-db",
        "-f",
        str(CONFIG),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()  # the process this test started, by its handle
        await process.wait()


async def presence_of(http: aiohttp.ClientSession, api_url: str) -> set[str]:
    async with http.get(f"{api_url}/api/presence?channel=news") as response:
        return set((await response.json())["clients"])


async def test_three_nodes_behind_haproxy_survive_a_killed_node(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                ServerProcess.start(
                    None,
                    "--broker",
                    redis_url,
                    "--redis-prefix",
                    prefix,
                    "--presence-ttl",
                    "3",
                    "--namespaces",
                    NAMESPACES,
                )
            )
            for _ in range(3)
        ]
        front = free_port()
        await stack.enter_async_context(haproxy(front, [node.port for node in nodes]))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        url = f"ws://127.0.0.1:{front}/connection/websocket"
        received: list[list[int]] = [[] for _ in range(9)]
        done = asyncio.Event()

        def collector(index: int):  # type: ignore[no-untyped-def]
            def on_publication(publication: ClientPublication) -> None:
                received[index].append(publication.data)
                if all(len(r) >= TOTAL for r in received):
                    done.set()

            return on_publication

        clients = []
        async with asyncio.timeout(20):
            for index in range(9):
                client = Client(url, min_reconnect_delay=0.05, max_reconnect_delay=1.0)
                await client.connect()  # retries with backoff until HAProxy and a node answer
                await client.subscribe("news", collector(index))
                clients.append(client)
        # clients spread over the nodes, and presence lists them all from any node
        counts = []
        for node in nodes:
            async with http.get(f"{node.api_url}/api/channels") as response:
                counts.append((await response.json())["channels"].get("news", {}).get("subscribers", 0))
        assert sum(counts) == 9 and sum(1 for count in counts if count) >= 2, counts
        before_kill = await presence_of(http, nodes[0].api_url)
        assert len(before_kill) == 9
        victim = max(range(3), key=lambda i: counts[i])
        survivors = [node for i, node in enumerate(nodes) if i != victim]

        for n in range(1, TOTAL + 1):  # publish through the surviving nodes, in turn
            body = {"channel": "news", "data": n}
            async with http.post(f"{survivors[n % 2].api_url}/api/publish", json=body) as response:
                assert response.status == 200
            if n == 100:
                nodes[victim].process.kill()  # SIGKILL: no drain, no goodbye
            await asyncio.sleep(0.005)  # a steady feed, not synchronisation
        try:
            await asyncio.wait_for(done.wait(), 30)
        except TimeoutError:
            summary = [
                (len(r), r[-1] if r else None, c.state, c.last_close_code)
                for r, c in zip(received, clients, strict=True)
            ]
            raise AssertionError(f"not every client got all {TOTAL}: {summary}") from None
        for messages in received:  # every publication once, in order, on every client
            assert messages == list(range(1, TOTAL + 1))
        # the dead node's presence entries vanish within the TTL; the reconnected clients are listed
        for _ in range(50):
            now = await presence_of(http, survivors[0].api_url)
            if len(now) == 9:
                break
            await asyncio.sleep(0.2)  # the 3 s lease running out, bounded by the loop
        assert len(now) == 9 and now != before_kill
        for client in clients:
            await client.close()
