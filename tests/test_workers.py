"""`hubbub serve --workers N`: several processes on one port, sharing everything through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid

import aiohttp

from tests.redis_server import free_port


def serve_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "hubbub", "serve", "--history-path", "none", "--connect-rate-per-ip", "none", *flags]


async def test_workers_share_one_port_and_deliver_across_processes(redis_url: str) -> None:
    port, api_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    process = await asyncio.create_subprocess_exec(
        *serve_command(
            "--workers",
            "2",
            "--broker",
            redis_url,
            "--redis-prefix",
            f"test-{uuid.uuid4().hex}",
            "--port",
            str(port),
            "--api-port",
            str(api_port),
        ),
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        async with aiohttp.ClientSession() as http:
            pids: set[int] = set()
            async with asyncio.timeout(20):
                while len(pids) < 2:  # new connections are spread over the workers by the kernel
                    try:
                        async with (
                            aiohttp.ClientSession() as fresh,
                            fresh.get(f"http://127.0.0.1:{api_port}/api/info") as response,
                        ):
                            pids.add((await response.json())["pid"])
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)  # workers still starting: polling, bounded above
            sockets = []
            for _ in range(10):
                ws = await http.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
                await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"news"}}')
                replies = 0
                while replies < 2:
                    replies += (await ws.receive(timeout=5)).data.count('"id"')
                sockets.append(ws)
            async with http.post(f"http://127.0.0.1:{api_port}/api/publish", json={"channel": "news", "data": 7}):
                pass
            for ws in sockets:  # whichever worker took the publish, every worker's subscribers get it
                message = await ws.receive(timeout=5)
                assert '"data":7' in message.data
                await ws.close()
    finally:
        process.send_signal(signal.SIGTERM)  # the parent passes it on to its workers
        assert await asyncio.wait_for(process.wait(), 20) == 0


def test_workers_without_redis_are_refused() -> None:
    import subprocess

    done = subprocess.run(serve_command("--workers", "2"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "needs a Redis broker" in done.stderr
