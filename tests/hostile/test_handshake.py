"""The upgrade request, byte by byte (RFC 6455 section 4.2): every malformed or unsupported request
gets its HTTP answer and a closed socket, and a good one still upgrades on the same server."""

from __future__ import annotations

import asyncio
import json

import pytest

from hubbub.server import Server
from tests.conftest import StartServer
from tests.wire import BareWebSocket, client_frame

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3: its accept value is below
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade(
    first_line: str = "GET /connection/websocket HTTP/1.1", *, drop: str = "", extra: str = "", key: str = RFC_KEY
) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "hubbub.json.v1",
    }
    lines = [first_line] + [f"{name}: {value}" for name, value in fields.items() if name != drop]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


async def exchange(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request`, read until the server closes: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # until EOF: the server must close
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *field_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in field_lines)}
    return int(status_line.split(" ")[1]), headers, body


async def test_a_good_upgrade_gets_101_with_the_rfc_accept_value(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    assert fields["sec-websocket-accept"] == RFC_ACCEPT
    assert fields["upgrade"] == "websocket" and fields["connection"] == "Upgrade"
    assert fields["sec-websocket-protocol"] == "hubbub.json.v1"
    assert fields["server"] == "hubbub" and fields["date"].endswith("GMT")
    writer.close()


BAD_REQUESTS = {
    "post": (upgrade("POST /connection/websocket HTTP/1.1"), 405, ("allow", "GET")),
    "http-1.0": (upgrade("GET /connection/websocket HTTP/1.0"), 505, None),
    "no-upgrade-header": (upgrade(drop="Upgrade"), 426, ("upgrade", "websocket")),
    "no-connection-header": (upgrade(drop="Connection"), 426, ("upgrade", "websocket")),
    "upgrade-to-two-protocols": (upgrade().replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"), 426, None),
    "connection-without-upgrade": (upgrade().replace(b"keep-alive, Upgrade", b"keep-alive"), 426, None),
    "old-version": (upgrade(extra="").replace(b"Version: 13", b"Version: 8"), 426, ("sec-websocket-version", "13")),
    "no-key": (upgrade(drop="Sec-WebSocket-Key"), 400, None),
    "key-not-base64": (upgrade(key="not base64!"), 400, None),
    "key-of-15-bytes": (upgrade(key="AAAAAAAAAAAAAAAAAAAA"), 400, None),
    "key-without-padding": (upgrade(key=RFC_KEY.rstrip("=")), 400, None),
    "key-not-ascii": (upgrade(key="\u00e9" * 24), 400, None),
    "two-keys": (upgrade(extra=f"Sec-WebSocket-Key: {RFC_KEY}\r\n"), 400, None),
    "two-hosts": (upgrade(extra="Host: evil.example\r\n"), 400, None),
    "two-origins": (upgrade(extra="Origin: http://127.0.0.1\r\nOrigin: http://evil.example\r\n"), 400, None),
    "unknown-subprotocol-only": (upgrade().replace(b"hubbub.json.v1", b"mqtt"), 400, None),
    "request-body": (upgrade(extra="Content-Length: 5\r\n") + b"hello", 400, None),
    "chunked-body": (upgrade(extra="Transfer-Encoding: chunked\r\n"), 400, None),
    "obs-fold": (upgrade(extra=" folded: value\r\n"), 400, None),
    "header-without-colon": (upgrade(extra="NoColonHere\r\n"), 400, None),
    "control-character-in-value": (upgrade(extra="X-Test: a\x01b\r\n"), 400, None),
    "garbage-request-line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, None),
    "two-spaces-in-request-line": (upgrade("GET  /connection/websocket HTTP/1.1"), 400, None),
    "non-ascii-path": (upgrade("GET /connection/websocket\u00e9 HTTP/1.1"), 400, None),
    "head-over-the-limit": (upgrade(extra="Cookie: " + "c" * 20_000 + "\r\n"), 431, None),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_bad_upgrade_gets_its_http_answer_and_a_good_client_still_connects(server: Server, case: str) -> None:
    request, status, header = BAD_REQUESTS[case]
    got_status, headers, _ = await exchange(server, request)
    assert got_status == status
    assert headers.get("connection") == "close" and headers.get("server") == "hubbub"
    if header is not None:
        name, value = header
        assert headers[name] == value
    good = await BareWebSocket.open(server.url)
    await good.send_json({"id": 1, "connect": {}})
    (reply,) = await asyncio.wait_for(good.read_messages(), 5)
    assert reply["id"] == 1 and "error" not in reply
    good.close()


async def test_head_limit_is_a_setting(start_server: StartServer) -> None:
    server = await start_server(max_request_head_bytes=512)
    status, _, _ = await exchange(server, upgrade(extra="Cookie: " + "c" * 600 + "\r\n"))
    assert status == 431
    client = await BareWebSocket.open(server.url, extra_headers="Cookie: " + "c" * 100 + "\r\n")
    client.close()


async def test_repeated_list_headers_are_joined_and_cookies_of_kilobytes_pass(server: Server) -> None:
    """Connection, Upgrade and subprotocol offers may come in several fields (RFC 9110 section 5.3)."""
    request = upgrade(drop="Sec-WebSocket-Protocol", extra="Sec-WebSocket-Protocol: mqtt\r\n")
    request = request.replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: hubbub.json.v1\r\nCookie: " + b"c" * 8000 + b"\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    assert head.startswith("HTTP/1.1 101") and "Sec-WebSocket-Protocol: hubbub.json.v1" in head
    writer.close()


async def test_fields_a_proxy_may_repeat_are_accepted(server: Server) -> None:
    request = upgrade(extra="X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nVia: 1.1 a\r\nVia: 1.1 b\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    writer.close()


async def test_header_values_are_case_insensitive_tokens(server: Server) -> None:
    request = (
        upgrade().replace(b"Upgrade: websocket", b"Upgrade: WebSocket").replace(b"keep-alive, Upgrade", b"UPGRADE")
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    writer.close()


async def test_frames_sent_with_the_upgrade_request_are_not_lost(server: Server) -> None:
    """A client may pipeline its first commands behind the request, in the same TCP segment."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade() + client_frame(b'{"id":1,"connect":{}}\n{"id":2,"ping":{}}'))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    socket = BareWebSocket(reader, writer)
    replies = await socket.read_replies(2)
    assert [reply["id"] for reply in replies] == [1, 2]
    assert json.dumps(replies[1]) == '{"id": 2, "ping": {}}'
    writer.close()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
async def test_request_split_across_many_writes_is_assembled(server: Server, chunk: int) -> None:
    """However the blank line that ends the head is split, it is found (the search resumes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for index in range(0, len(request := upgrade()), chunk):
        writer.write(request[index : index + chunk])
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    writer.close()
