"""SSE and HTTP streaming behind HAProxy (deploy/haproxy.cfg, three nodes) and nginx
(deploy/nginx.conf, two nodes), one Redis, no stickiness: an SSE stream resumes on whichever
node its reconnect reaches, and an HTTP stream's command POSTs reach it from the other nodes
through the broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.process import ServerProcess
from tests.redis_server import free_port
from tests.scale.test_haproxy import NAMESPACES, haproxy
from tests.scale.test_nginx import nginx
from tests.streams import SseReader, StreamReader


async def connections_on(http: aiohttp.ClientSession, nodes: list[ServerProcess]) -> list[int]:
    counts = []
    for node in nodes:
        async with http.get(f"{node.api_url}/api/info") as response:
            counts.append((await response.json())["connections"])
    return counts


async def forwarded_messages(http: aiohttp.ClientSession, nodes: list[ServerProcess]) -> int:
    """Command POSTs that nodes passed on through the broker (hubbub_stream_messages_total)."""
    total = 0
    for node in nodes:
        async with http.get(f"{node.api_url}/metrics") as response:
            text = await response.text()
        match = re.search(r'^hubbub_stream_messages_total\{path="broker"\} (\S+)$', text, re.MULTILINE)
        total += int(float(match.group(1))) if match else 0
    return total


@contextlib.asynccontextmanager
async def nodes_behind(proxy: str, redis_url: str, folder: Path):  # type: ignore[no-untyped-def]
    """deploy/haproxy.cfg before three nodes, or deploy/nginx.conf before two; one Redis."""
    prefix = f"test-{uuid.uuid4().hex}"
    flags = ("--broker", redis_url, "--redis-prefix", prefix, "--namespaces", NAMESPACES)
    async with contextlib.AsyncExitStack() as stack:
        count = 3 if proxy == "haproxy" else 2
        nodes = [await stack.enter_async_context(ServerProcess.start(None, *flags)) for _ in range(count)]
        front = free_port()
        ports = [node.port for node in nodes]
        await stack.enter_async_context(haproxy(front, ports) if proxy == "haproxy" else nginx(folder, front, ports))
        yield nodes, f"http://127.0.0.1:{front}"


async def wait_for_front(http: aiohttp.ClientSession, front: str) -> None:
    async with asyncio.timeout(10):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{front}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)  # polling a process we started until it listens


async def publish(http: aiohttp.ClientSession, node: ServerProcess, n: int) -> None:
    async with http.post(f"{node.api_url}/api/publish", json={"channel": "news", "data": n}) as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("proxy", ["haproxy", "nginx"])
async def test_sse_resumes_on_whichever_node_the_reconnect_reaches(redis_url: str, tmp_path: Path, proxy: str) -> None:
    async with nodes_behind(proxy, redis_url, tmp_path) as (nodes, front), aiohttp.ClientSession() as http:
        await wait_for_front(http, front)
        last_id: str | None = None
        served_by: set[int] = set()
        received: list[int] = []
        published = 0
        async with asyncio.timeout(60):
            for round_number in range(4):
                headers = {"Last-Event-ID": last_id} if last_id else {}
                async with http.get(f"{front}/connection/sse?channel=news", headers=headers) as response:
                    assert response.status == 200
                    reader = SseReader(response)
                    await reader.next_of("subscribed")
                    served_by.add((await connections_on(http, nodes)).index(1))
                    if proxy == "haproxy":  # nginx takes the header as its own instruction, and drops it
                        assert response.headers["X-Accel-Buffering"] == "no"
                    await publish(http, nodes[round_number % len(nodes)], published)  # one live
                    published += 1
                    while len(received) < published:  # the missed ones replay first, then the live one
                        received.append((await reader.next_of("message")).json["data"])
                    last_id = reader.last_event_id
                for _ in range(2):  # published while the stream is away, through any node
                    await publish(http, nodes[published % len(nodes)], published)
                    published += 1
        assert received == list(range(published - 2))  # every one once, in order
        assert len(served_by) >= 2, served_by  # no stickiness: reconnects reached other nodes


@pytest.mark.parametrize("proxy", ["haproxy", "nginx"])
async def test_http_stream_commands_reach_the_stream_from_other_nodes(
    redis_url: str, tmp_path: Path, proxy: str
) -> None:
    async with nodes_behind(proxy, redis_url, tmp_path) as (nodes, front), aiohttp.ClientSession() as http:
        await wait_for_front(http, front)
        async with asyncio.timeout(30), http.post(f"{front}/connection/stream") as response:
            assert response.status == 200
            reader = await StreamReader(response).open()
            commands = [
                {"id": 1, "connect": {}},
                {"id": 2, "subscribe": {"channel": "news"}},
                {"id": 3, "publish": {"channel": "news", "data": "via a POST"}},
            ]
            for seq, command in enumerate(commands, start=1):
                body = json.dumps({"stream": reader.stream_id, "seq": seq}) + "\n" + json.dumps(command)
                # A fresh connection per POST, as browsers open them: HAProxy balances each.
                async with aiohttp.ClientSession() as once:
                    async with once.post(f"{front}/connection/stream/send", data=body) as sent:
                        assert sent.status == 202
            replies: list[dict[str, Any]] = []
            pushes: list[dict[str, Any]] = []
            while len(replies) < 3 or not pushes:  # the publication may come before its reply
                message = await reader.next_message()
                (pushes if "push" in message else replies).append(message)
            assert [reply["id"] for reply in replies] == [1, 2, 3]
            assert [push["push"]["pub"]["data"] for push in pushes] == ["via a POST"]
        # leastconn sends the POSTs away from the node holding the stream: through the broker.
        assert await forwarded_messages(http, nodes) >= 1
