"""`hubbub top` and structured logs, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from typing import Any

from hubbub.core.auth import mint_token
from tests.conftest import OpenRaw, StartServer
from tests.helpers import SECRET


async def test_top_shows_connections_and_channel_rates(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(admin_key="a" * 40, admin_interval=0.1)
    assert server.hub is not None
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "news"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "top",
        "--url",
        server.api_url,
        "--key",
        "a" * 40,
        "--count",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    publishing = True

    async def traffic() -> None:
        while publishing:
            await server.hub.publish("news", __import__("msgspec").Raw(b"1"))  # type: ignore[union-attr]
            await asyncio.sleep(0.01)  # a steady feed, not synchronisation

    feed = asyncio.create_task(traffic())
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    publishing = False
    await feed
    text = output.decode()
    assert process.returncode == 0, text
    assert "connections 1" in text
    assert re.search(r"^news\s+[1-9][0-9.]*\s+1$", text, re.MULTILINE), text  # a rate above zero, 1 subscriber


async def test_top_with_a_wrong_key_says_so(start_server: StartServer) -> None:
    server = await start_server(admin_key="a" * 40)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "top",
        "--url",
        server.api_url,
        "--key",
        "wrong",
        "--count",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and b"refused the key" in errors


async def test_json_logs_carry_connection_and_user_ids_and_no_secrets(open_raw: OpenRaw) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    env["HUBBUB_TOKEN_SECRET"] = SECRET
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "serve",
        "--port",
        "0",
        "--api-port",
        "0",
        "--history-path",
        "none",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
            if match := re.search(r"WebSocket on (ws://\S+)", line):
                url = match.group(1)
        token = mint_token(SECRET, "alice")

        class Target:
            pass

        target = Target()
        target.url = url  # type: ignore[attr-defined]
        client = await open_raw(target, connect=False)
        await client.ok("connect", {"token": token})
        entries: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not any(e.get("user") == "alice" and e.get("client") for e in entries):
                raw = await process.stderr.readline()
                assert raw, "server ended"
                assert token.encode() not in raw and SECRET.encode() not in raw
                entries.append(json.loads(raw))
        entry = next(e for e in entries if e.get("user") == "alice")
        assert entry["level"] == "debug" and entry["message"] == "connected" and "time" in entry
    finally:
        process.terminate()
        await process.wait()
