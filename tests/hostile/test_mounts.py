"""The hostile-input tests against the mounts (FastAPI/uvicorn and aiohttp). Where the host
server behaves differently from hubbub's own transport, the test pins what it does, and
docs/integration.md#one-port lists it: these assertions are that list."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.hostile.test_frames import VIOLATIONS, trickle_until_dropped
from tests.mounts import MOUNTS, Mounted, mounted
from tests.wire import BareWebSocket, client_frame

# Differences from hubbub's own transport, by mount: case -> what the host does instead.
DIFFERENCES = {("aiohttp", "unmasked-frame"): "accepted"}  # aiohttp reads unmasked client frames


async def attack(host: Mounted, data: bytes) -> int | str | None:
    """Connect, then send `data`: the close code, or "accepted" if the server answers a ping after it."""
    attacker = await BareWebSocket.open(host.url)
    try:
        await attacker.send_json({"id": 1, "connect": {}})
        await attacker.read_messages()
        await attacker.send_bytes(data)
        await attacker.send_json({"id": 2, "ping": {}})
        async with asyncio.timeout(10):
            while True:
                opcode, payload = await attacker.read_frame()
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                if opcode == 0x1 and b'"id":2' in payload:
                    return "accepted"
    finally:
        attacker.close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_protocol_violations_through_the_mount(tmp_path: Path, kind: str) -> None:
    async with mounted(kind, tmp_path) as host:
        good = await BareWebSocket.open(host.url)
        await good.send_json({"id": 1, "connect": {}})
        await good.send_json({"id": 2, "subscribe": {"channel": "news"}})
        await good.read_messages()
        outcomes = {case: await attack(host, data) for case, (data, _) in VIOLATIONS.items()}
        expected = {case: DIFFERENCES.get((kind, case), code) for case, (_, code) in VIOLATIONS.items()}
        assert outcomes == expected
        await host.server.publish("news", 1)  # the good client carried on through all of it
        messages: list[dict[str, object]] = []
        while not any("push" in m for m in messages):
            messages += await good.read_messages()
        good.close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_hubbubs_own_checks_hold_on_the_mount(tmp_path: Path, kind: str) -> None:
    """Message size, frame type, bad commands, Origin and slow readers are hubbub's, not the host's."""
    async with mounted(kind, tmp_path, max_message_bytes=1024, allowed_origins="https://good.example") as host:
        assert await attack(host, client_frame(b" " * 2048)) == 1009
        assert await attack(host, client_frame(b'{"id":3,"ping":{}}', opcode=0x2)) == 1003
        assert await attack(host, client_frame(b"hello")) == 3501
        with pytest.raises(ConnectionError, match="403"):
            await BareWebSocket.open(host.url, extra_headers="Origin: https://evil.example\r\n")
        (await BareWebSocket.open(host.url, extra_headers="Origin: https://good.example\r\n")).close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_a_reader_that_stops_is_cut_as_slow_on_the_mount(tmp_path: Path, kind: str) -> None:
    async with mounted(kind, tmp_path, max_outbox_bytes=65536) as host:
        slow = await BareWebSocket.open(host.url)
        await slow.send_json({"id": 1, "connect": {}})
        await slow.send_json({"id": 2, "subscribe": {"channel": "feed:big"}})
        await slow.read_messages()
        hub = host.server.hub
        assert hub is not None
        for _ in range(3000):  # the client reads nothing: kernel buffers, the host's, then the outbox fill
            if not hub.sessions:
                break
            await host.server.publish("feed:big", "x" * 60000)
            await asyncio.sleep(0)  # a yield: the writer task hands frames to the host between publications
        assert not hub.sessions
        assert hub.stats.slow_consumer_disconnects == 1
        slow.close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_a_silent_peer_is_dropped_by_the_hosts_pings(tmp_path: Path, kind: str) -> None:
    async with mounted(kind, tmp_path, ping_interval=0.3, ping_timeout=0.3) as host:
        silent = await BareWebSocket.open(host.url)
        await silent.send_json({"id": 1, "connect": {}})
        started = time.monotonic()
        async with asyncio.timeout(10):
            try:
                while (await silent.read_frame())[0] != 0x8:  # reads, never answers a ping
                    pass
            except asyncio.IncompleteReadError:
                pass  # aiohttp's heartbeat drops the socket without a close frame
        assert time.monotonic() - started < 5
        silent.close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_neither_host_drops_a_trickled_handshake(tmp_path: Path, kind: str) -> None:
    """hubbub's own transport drops it after handshake_timeout; uvicorn and aiohttp have no header
    timeout: put a proxy with one in front (docs/deployment.md's HAProxy and nginx configs do)."""
    async with mounted(kind, tmp_path) as host:
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        head = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Pad: " + b"a" * 40
        assert await trickle_until_dropped(reader, writer, head, 0.05) is False  # still held after ~3 s
        writer.close()


# What each host answers to the malformed upgrades of test_handshake.py (hubbub's own answers are
# there): the status line's code, or None for no answer within a second (the host waits for more).
HOST_ANSWERS: dict[str, dict[str, int | None]] = {
    "asgi": {
        "post": 405, "http-1.0": 101, "no-upgrade-header": 404, "no-connection-header": 404,
        "upgrade-to-two-protocols": 404, "connection-without-upgrade": 404, "old-version": 400, "no-key": 400,
        "key-not-base64": 400, "key-of-15-bytes": 400, "key-without-padding": 400, "key-not-ascii": 400,
        "two-keys": 400, "two-hosts": 400, "two-origins": 400,
        "unknown-subprotocol-only": 400, "request-body": None, "chunked-body": None, "obs-fold": 400,
        "header-without-colon": 400, "control-character-in-value": None, "garbage-request-line": 400,
        "two-spaces-in-request-line": 400, "non-ascii-path": 400, "head-over-the-limit": None,
    },
    "aiohttp": {
        "post": 405, "http-1.0": 101, "no-upgrade-header": 400, "no-connection-header": 400,
        "upgrade-to-two-protocols": 400, "connection-without-upgrade": 400, "old-version": 101, "no-key": 400,
        "key-not-base64": 400, "key-of-15-bytes": 400, "key-without-padding": 400,
        "key-not-ascii": 400,  # the mount's own check: aiohttp's prepare raised on it (a 500)
        "two-keys": 101, "two-hosts": 400, "two-origins": 403,
        "unknown-subprotocol-only": 400, "request-body": 101, "chunked-body": 101, "obs-fold": 400,
        "header-without-colon": 400, "control-character-in-value": 400, "garbage-request-line": 400,
        "two-spaces-in-request-line": 101, "non-ascii-path": 400, "head-over-the-limit": 400,
    },
}  # fmt: skip

# uvicorn 0.55 answers what its parser rejects where earlier versions kept waiting for more.
UVICORN_0_55_ANSWERS = {
    "request-body": 400,
    "chunked-body": 400,
    "control-character-in-value": 400,
    "head-over-the-limit": 431,
}


def expected_answers(kind: str) -> dict[str, int | None]:
    """HOST_ANSWERS for the host version installed here."""
    uvicorn_version = tuple(int(part) for part in version("uvicorn").split(".")[:2])
    if kind == "asgi" and uvicorn_version >= (0, 55):
        return HOST_ANSWERS[kind] | UVICORN_0_55_ANSWERS
    return HOST_ANSWERS[kind]


async def first_status(port: int, request: bytes) -> int | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 1)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        return int(head.split(b" ")[1])
    finally:
        writer.close()


@pytest.mark.parametrize("kind", MOUNTS)
async def test_malformed_upgrades_get_the_hosts_answers(tmp_path: Path, kind: str) -> None:
    from tests.hostile.test_handshake import BAD_REQUESTS

    async with mounted(kind, tmp_path) as host:
        answers = {case: await first_status(host.port, request) for case, (request, _, _) in BAD_REQUESTS.items()}
        assert answers == expected_answers(kind)
        (await BareWebSocket.open(host.url)).close()  # a good client still connects
