"""RFC 6455 violations and handshake abuse: each gets its exact close code (or is dropped),
while a well-behaved client on the same server keeps receiving every publication."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest
from msgspec import Raw

from hubbub.config import Settings
from hubbub.server import Server
from tests.conftest import OpenRaw, StartServer
from tests.wire import BareWebSocket, client_frame

VIOLATIONS = {
    # RFC 6455 section 5.1: a client MUST mask every frame.
    "unmasked-frame": (client_frame(b'{"id":9,"ping":{}}', mask=False), 1002),
    # 5.2: RSV bits MUST be 0 unless an extension defines them.
    "reserved-bit-1": (bytes([0x80 | 0x40 | 0x1]) + client_frame(b"x")[1:], 1002),
    "reserved-bit-2": (bytes([0x80 | 0x20 | 0x1]) + client_frame(b"x")[1:], 1002),
    "reserved-bit-3": (bytes([0x80 | 0x10 | 0x1]) + client_frame(b"x")[1:], 1002),
    # 5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
    "unknown-opcode": (client_frame(b"x", opcode=0x3), 1002),
    "unknown-control-opcode": (client_frame(b"x", opcode=0xB), 1002),
    # 5.5: control frames MUST NOT be fragmented and carry at most 125 bytes.
    "fragmented-ping": (client_frame(b"x", opcode=0x9, fin=False), 1002),
    "oversized-ping": (client_frame(b"x" * 126, opcode=0x9), 1002),
    # 8.1: text frames MUST be valid UTF-8.
    "invalid-utf8": (client_frame(b'{"id":1,"ping":{}}\xff\xfe'), 1007),
    # 5.4: a continuation frame needs a started message.
    "continuation-without-start": (client_frame(b"x", opcode=0x0), 1002),
    # 7.4: 999 and 1005 may not be sent in a close frame.
    "invalid-close-code-999": (client_frame(struct.pack("!H", 999), opcode=0x8), 1002),
    "invalid-close-code-1005": (client_frame(struct.pack("!H", 1005), opcode=0x8), 1002),
    # 5.2: a 64-bit length of 2^63 with no data: refused at once as too big, never allocated.
    "length-2-to-the-63": (bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**63) + os.urandom(4), 1009),
}


async def _publish(server: Server, value: int) -> None:
    assert server.hub is not None
    await server.hub.publish("news", Raw(b"%d" % value))


@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_protocol_violation_gets_its_close_code(server: Server, open_raw: OpenRaw, case: str) -> None:
    data, expected = VIOLATIONS[case]
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    attacker = await BareWebSocket.open(server.url)
    await attacker.send_json({"id": 1, "connect": {}})
    await attacker.read_messages()
    await _publish(server, 1)
    await attacker.send_bytes(data)
    assert await asyncio.wait_for(attacker.close_code(), 10) == expected
    await _publish(server, 2)
    assert [(await good.next_publication())["data"] for _ in range(2)] == [1, 2]
    attacker.close()


async def trickle_until_dropped(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, interval: float
) -> bool:
    """Send one byte per `interval` (the attack); True once the server closes the connection."""
    for byte in data:
        try:
            writer.write(bytes([byte]))
            if await asyncio.wait_for(reader.read(1024), interval) == b"":
                return True  # EOF: dropped (a 4xx answer, if any, came before it)
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


async def test_slowloris_handshake_is_dropped_within_the_handshake_timeout(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    """A client that trickles its HTTP request is disconnected after handshake_timeout."""
    server = await start_server(handshake_timeout=1.0)
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = f"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
    started = time.monotonic()
    assert await trickle_until_dropped(reader, writer, request.encode(), interval=0.05), "never dropped"
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"slow handshake lived {elapsed:.1f}s"
    writer.close()
    await _publish(server, 1)
    assert (await good.next_publication())["data"] == 1


async def test_a_silent_peer_is_dropped_within_ping_interval_plus_ping_timeout_plus_close_timeout(
    start_server: StartServer,
) -> None:
    """A peer that stops reading and writing (its host vanished) is dropped, and its session with it,
    within ping_interval + ping_timeout + close_timeout; the defaults keep that under a minute."""
    defaults = Settings()
    interval, timeout, close = defaults.ping_interval, defaults.ping_timeout, defaults.close_timeout
    assert interval is not None and timeout is not None and close is not None
    assert interval + timeout + close <= 60
    server = await start_server(ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3)
    assert server.hub is not None
    silent = await BareWebSocket.open(server.url)
    await silent.send_json({"id": 1, "connect": {}})
    assert "connect" in (await silent.read_messages())[0]
    assert len(server.hub.sessions) == 1
    started = time.monotonic()
    # From here on the peer neither reads nor writes: no pong, no close frame, nothing.
    assert server._endpoint is not None and server._endpoint.server is not None
    await asyncio.wait_for(server._endpoint.server.wait_idle(), 5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.2 + 0.3 + 0.3 + 1.0, f"a silent peer lived {elapsed:.1f} s"
    assert not server.hub.sessions
    silent.close()


async def test_shutdown_with_a_silent_peer_ends_within_shutdown_timeout(start_server: StartServer) -> None:
    """Drain does not wait forever on a peer that never answers our close frame."""
    assert Settings().shutdown_timeout <= 30
    server = await start_server(shutdown_timeout=0.5, close_timeout=10, ping_interval=None)
    silent = await BareWebSocket.open(server.url)
    await silent.send_json({"id": 1, "connect": {}})
    assert "connect" in (await silent.read_messages())[0]
    started = time.monotonic()
    await asyncio.wait_for(server.close(), 5)
    assert time.monotonic() - started < 0.5 + 1.0
    silent.close()
