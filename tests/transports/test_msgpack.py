"""hubbub.msgpack.v1 over real sockets: the same messages as JSON, in binary MessagePack frames."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import pytest

from hubbub.errors import DisconnectCode
from hubbub.server import Server

MSGPACK = "hubbub.msgpack.v1"


async def receive_messages(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """One binary frame: a map (one message) or an array of maps (several)."""
    frame = await ws.receive(timeout=5)
    assert frame.type == aiohttp.WSMsgType.BINARY, (frame.type, frame.data)
    value = msgspec.msgpack.decode(frame.data)
    return value if isinstance(value, list) else [value]


async def test_negotiates_the_first_offered_encoding_it_speaks(server: Server, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(server.url, protocols=("mqtt", MSGPACK, "hubbub.json.v1")) as ws:
        assert ws.protocol == MSGPACK
    async with http.ws_connect(server.url, protocols=("hubbub.json.v1", MSGPACK)) as ws:
        assert ws.protocol == "hubbub.json.v1"


async def test_commands_replies_and_coalesced_publications(server: Server, http: aiohttp.ClientSession) -> None:
    """Two commands in one frame get their replies; a batch of publications arrives as one array."""
    async with http.ws_connect(server.url, protocols=(MSGPACK,)) as ws:
        await ws.send_bytes(
            msgspec.msgpack.encode([{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "news"}}])
        )
        replies: list[dict[str, Any]] = []
        while len(replies) < 2:
            replies += await receive_messages(ws)
        assert [r["id"] for r in replies] == [1, 2] and "client" in replies[0]["connect"]
        publications = [{"channel": "news", "data": {"n": n, "text": "héllo"}} for n in range(5)]
        async with http.post(f"{server.api_url}/api/batch", json={"publications": publications}) as response:
            assert response.status == 200
        frame = await receive_messages(ws)
        assert len(frame) == 5  # one loop turn, one frame: an array of five pushes
        assert [m["push"]["pub"]["data"] for m in frame] == [p["data"] for p in publications]
        assert [m["push"]["pub"]["offset"] for m in frame] == [1, 2, 3, 4, 5]
        await ws.send_bytes(msgspec.msgpack.encode({"id": 3, "history": {"channel": "news", "limit": 2}}))
        (history,) = await receive_messages(ws)
        assert [p["offset"] for p in history["history"]["publications"]] == [1, 2]


async def test_binary_values_reach_json_subscribers_as_base64(server: Server, http: aiohttp.ClientSession) -> None:
    async with (
        http.ws_connect(server.url, protocols=("hubbub.json.v1",)) as reader,
        http.ws_connect(server.url, protocols=(MSGPACK,)) as writer,
    ):
        await reader.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"files"}}')
        while '"id":2' not in (await reader.receive_str(timeout=5)):
            pass
        publish = [{"id": 1, "connect": {}}, {"id": 2, "publish": {"channel": "files", "data": {"blob": b"\x00\x01"}}}]
        await writer.send_bytes(msgspec.msgpack.encode(publish))
        push = msgspec.json.decode(await reader.receive_str(timeout=5))
        assert push["push"]["pub"]["data"] == {"blob": "AAE="}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"id":1,"connect":{}}', DisconnectCode.UNSUPPORTED_DATA),  # a text frame
        (b"\xc1", DisconnectCode.BAD_REQUEST),  # never valid MessagePack
        (msgspec.msgpack.encode({1: {"connect": {}}}), DisconnectCode.BAD_REQUEST),  # a key that is no string
        (msgspec.msgpack.encode([]), DisconnectCode.BAD_REQUEST),
        (msgspec.msgpack.encode("connect"), DisconnectCode.BAD_REQUEST),
    ],
    ids=["text-frame", "malformed", "int-key", "empty-array", "not-a-map"],
)
async def test_bad_frames_close_with_a_clear_code(
    server: Server, http: aiohttp.ClientSession, frame: str | bytes, code: int
) -> None:
    async with http.ws_connect(server.url, protocols=(MSGPACK,)) as ws:
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == code, (closing.type, closing.data)
