"""permessage-deflate (RFC 7692): negotiated when on, small frames left alone, big ones
compressed once for every subscriber, and the result readable by a real client."""

from __future__ import annotations

import json
import zlib

import aiohttp
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.conftest import StartServer
from tests.wire import BareWebSocket

OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
RSV1 = 0x40


async def subscribed(url: str, channel: str, offer: str = OFFER, window_bits: int = 15) -> BareWebSocket:
    socket = await BareWebSocket.open(url, extra_headers=offer)
    await socket.send_json({"id": 1, "connect": {}})
    await socket.send_json({"id": 2, "subscribe": {"channel": channel}})
    replies = 0
    while replies < 2:
        first, payload = await socket.read_frame_with_flags()
        replies += len((inflate(payload, window_bits) if first & RSV1 else payload).split(b"\n"))
    return socket


async def publish(api_url: str, channel: str, data: object) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api_url}/api/publish", json={"channel": channel, "data": data}) as response,
    ):
        assert response.status == 200, await response.text()


def inflate(payload: bytes, window_bits: int = 15) -> bytes:
    return zlib.decompressobj(-window_bits).decompress(payload + b"\x00\x00\xff\xff")


async def test_off_by_default_no_extension_is_negotiated(start_server: StartServer) -> None:
    server = await start_server()
    socket = await BareWebSocket.open(server.url, extra_headers=OFFER)
    assert "permessage-deflate" not in socket.response_head.lower()
    socket.close()


async def test_big_frames_are_compressed_once_small_ones_are_not(start_server: StartServer) -> None:
    server = await start_server(compression=True, compression_threshold=200)
    first = await subscribed(server.url, "news")
    second = await subscribed(server.url, "news")
    assert "permessage-deflate" in first.response_head and "server_no_context_takeover" in first.response_head
    assert "client_no_context_takeover" in first.response_head  # no inflater kept between messages
    await publish(server.api_url, "news", {"text": "short"})
    for socket in (first, second):
        head, payload = await socket.read_frame_with_flags()
        assert not head & RSV1 and json.loads(payload)["push"]["pub"]["data"] == {"text": "short"}
    big = {"text": "all work and no play " * 40}
    await publish(server.api_url, "news", big)
    frames = [await socket.read_frame_with_flags() for socket in (first, second)]
    assert all(head & RSV1 for head, _ in frames)
    assert frames[0] == frames[1]  # the same compressed bytes: compressed once for both
    compressed = frames[0][1]
    assert len(compressed) < len(json.dumps(big)) / 4
    assert json.loads(inflate(compressed))["push"]["pub"]["data"] == big
    for socket in (first, second):
        socket.close()


async def test_a_smaller_window_asked_for_by_the_client_is_used(start_server: StartServer) -> None:
    server = await start_server(compression=True, compression_threshold=0)
    offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"
    socket = await subscribed(server.url, "news", offer, window_bits=10)
    assert "server_max_window_bits=10" in socket.response_head
    data = {"text": "abcdefghij" * 300}
    await publish(server.api_url, "news", data)
    head, payload = await socket.read_frame_with_flags()
    assert head & RSV1 and json.loads(inflate(payload, 10))["push"]["pub"]["data"] == data
    socket.close()


async def test_a_websockets_client_reads_compressed_and_plain_frames(start_server: StartServer) -> None:
    server = await start_server(compression=True, compression_threshold=100)
    async with connect(server.url, subprotocols=[Subprotocol("hubbub.json.v1")], compression="deflate") as ws:
        await ws.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"mixed"}}')
        while '"id":2' not in str(await ws.recv()):
            pass
        sent = [{"n": 1}, {"n": 2, "pad": "z" * 500}, {"n": 3}]
        for data in sent:
            await publish(server.api_url, "mixed", data)
        received = [json.loads(await ws.recv())["push"]["pub"]["data"] for _ in sent]
        assert received == sent


async def test_compressed_commands_from_a_client_are_inflated_one_by_one(start_server: StartServer) -> None:
    """The client compresses each message on its own, as negotiated; big ones still arrive whole."""
    server = await start_server(compression=True)
    async with (
        connect(server.url, subprotocols=[Subprotocol("hubbub.json.v1")], compression="deflate") as publisher,
        connect(server.url, subprotocols=[Subprotocol("hubbub.json.v1")]) as reader,
    ):
        assert publisher.protocol.extensions[0].local_no_context_takeover  # type: ignore[attr-defined]
        await reader.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"big"}}')
        while '"id":2' not in str(await reader.recv()):
            pass
        await publisher.send('{"id":1,"connect":{}}')
        await publisher.recv()
        sent = [{"n": n, "pad": "q" * 2000} for n in range(3)]
        for index, data in enumerate(sent, start=2):
            await publisher.send(json.dumps({"id": index, "publish": {"channel": "big", "data": data}}))
        received: list[object] = []
        while len(received) < len(sent):  # several pushes may share a frame
            received += [json.loads(line)["push"]["pub"]["data"] for line in str(await reader.recv()).split("\n")]
        assert received == sent
