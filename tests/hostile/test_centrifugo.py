"""Attacks through Centrifugo's protocol (/connection/centrifugo), in JSON and in Protobuf:
malformed and oversized input, lying lengths, unknown commands, floods, and subscribers that
never read. Each gets a clear error or close code, memory stays bounded, and a good client on
the same channel loses nothing meanwhile."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from bench.process import ServerProcess
from hubbub.server import Server
from tests.centrifugo.conftest import centrifugo_starter
from tests.centrifugo.wire import CentrifugoWire, encode_commands, varint
from tests.conftest import StartServer
from tests.hostile.conftest import SpawnServer
from tests.hostile.test_memory import flood_past_deaf_subscribers
from tests.wire import BareWebSocket, client_frame

PROTOBUF = "centrifuge-protobuf"


@pytest.fixture(params=["json", "protobuf"])
def protobuf(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "protobuf")


@pytest.fixture
def start_centrifugo(start_server: StartServer) -> StartServer:
    return centrifugo_starter(start_server)


async def good_subscriber(http: aiohttp.ClientSession, server: Server, protobuf: bool) -> CentrifugoWire:
    """A well-behaved subscriber of `chat:good`, of the other encoding than the attacker."""
    wire = await CentrifugoWire.open(http, server, protobuf=not protobuf)
    assert "connect" in await wire.call("connect", {})
    assert "subscribe" in await wire.call("subscribe", {"channel": "chat:good"})
    return wire


async def still_gets_everything(server: Server, good: CentrifugoWire, n: int) -> None:
    await server.publish("chat:good", {"n": n})
    while True:
        push = (await good.message()).get("push", {})
        if "pub" in push:
            data = push["pub"]["data"]
            decoded = json.loads(base64.b64decode(data)) if good.protobuf else data
            assert decoded == {"n": n}
            return


def without_id() -> bytes:
    frame = encode_commands([{"subscribe": {"channel": "chat:x"}}], True)
    assert isinstance(frame, bytes)
    return frame


def protobuf_frames() -> dict[str, bytes]:
    """Binary frames that are not valid `centrifuge-protobuf` (each closes 3501)."""
    return {
        "garbage": varint(8) + b"\xff\xff\xff\xff\xff\xff\xff\xff",
        "a varint claiming 2^63 bytes": varint(2**63) + b"\x08\x01",
        "a varint that never ends": b"\xff" * 11,
        "a message longer than its frame": varint(100) + b"\x08\x01",
        "a wrong wire type": varint(2) + b"\x0a\x00" + varint(3) + b"\x22\x05\x00",
        "a command without an id": without_id(),
        "groups nested 30,000 deep": varint(60_000) + b"\x5b" * 30_000 + b"\x5c" * 30_000,  # field 11
    }


@pytest.mark.parametrize("case", list(protobuf_frames()))
async def test_invalid_protobuf_is_closed_3501(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, case: str
) -> None:
    server = await start_centrifugo(token_secret=None)
    good = await good_subscriber(http, server, protobuf=True)
    wire = await CentrifugoWire.open(http, server, protobuf=True)
    await wire.ws.send_bytes(protobuf_frames()[case])
    assert await wire.close_code() == 3501
    await still_gets_everything(server, good, 1)


@pytest.mark.parametrize(
    "frame",
    [
        '{"id":1,',  # not JSON
        '{"id":1,"connect":{"data":' + "[" * 100_000 + "]" * 100_000 + "}}",  # deeper than any parser goes
        '{"id":"one","connect":{}}',  # a command of the wrong shape
        '{"id":-1,"connect":{}}',
    ],
    ids=["truncated", "deeply nested", "string id", "negative id"],
)
async def test_malformed_json_is_closed_3501(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, frame: str
) -> None:
    server = await start_centrifugo(token_secret=None, max_message_bytes=1_000_000)
    good = await good_subscriber(http, server, protobuf=False)
    wire = await CentrifugoWire.open(http, server, protobuf=False)
    await wire.ws.send_str(frame)
    assert await wire.close_code() == 3501
    await still_gets_everything(server, good, 1)


async def test_oversized_frames_are_closed_1009(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    server = await start_centrifugo(token_secret=None, max_message_bytes=65536)
    good = await good_subscriber(http, server, protobuf)
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    await wire.send({"id": 1, "connect": {"data": wire.data("x" * 70_000)}})
    assert await wire.close_code() == 1009
    await still_gets_everything(server, good, 1)


async def test_unknown_commands_get_104_and_the_connection_goes_on(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    server = await start_centrifugo(token_secret=None)
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    assert "connect" in await wire.call("connect", {})
    if protobuf:  # an id and a field number Centrifugo's schema does not have
        await wire.ws.send_bytes(varint(5) + b"\x08\x07" + b"\xb8\x06\x01")  # id 7, field 103 = 1
    else:
        await wire.ws.send_str('{"id":7,"frobnicate":{"x":1}}')
    reply = await wire.reply(7)
    assert reply["error"]["code"] == 104
    assert "ping" in await wire.call("ping")


async def test_oversized_batches_and_floods_are_refused_then_closed_3013(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    server = await start_centrifugo(token_secret=None, command_rate=5.0, command_burst=5, max_refused_commands=10)
    good = await good_subscriber(http, server, protobuf)
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    assert "connect" in await wire.call("connect", {})
    await wire.send(*[{"id": n, "presence_stats": {"channel": "chat:good"}} for n in range(2, 202)])  # one frame
    assert await wire.close_code() == 3013
    codes = [message["error"]["code"] for message in wire.received if "error" in message]
    assert codes and set(codes) == {111}  # too many requests, each answered, then the close
    await still_gets_everything(server, good, 1)


async def subscribed_and_deaf(server: ServerProcess, protobuf: bool) -> BareWebSocket:
    """A Centrifugo subscriber of `news` that subscribes, then never reads again."""
    client = await BareWebSocket.open(
        f"ws://127.0.0.1:{server.port}/connection/centrifugo", subprotocol=PROTOBUF if protobuf else None
    )
    commands: list[dict[str, Any]] = [{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "news"}}]
    frame = encode_commands(commands, protobuf)
    opcode = 0x2 if isinstance(frame, bytes) else 0x1
    client.writer.write(client_frame(frame if isinstance(frame, bytes) else frame.encode(), opcode=opcode))
    await client.writer.drain()
    return client


async def test_200_centrifugo_subscribers_that_never_read_keep_memory_bounded(
    spawn_server: SpawnServer, http: aiohttp.ClientSession
) -> None:
    """Each deaf subscriber (half JSON, half Protobuf) is cut at its outbox limit (3008), memory
    stays bounded, and a Centrifugo subscriber that reads gets every publication, in order."""
    server = await spawn_server("--max-outbox-bytes", "65536")
    good = await CentrifugoWire.open(http, server, protobuf=True)
    assert "connect" in await good.call("connect", {})
    assert "subscribe" in await good.call("subscribe", {"channel": "news"})
    deaf = [await subscribed_and_deaf(server, protobuf=n % 2 == 1) for n in range(200)]
    await wait_subscribed(http, server, 201)

    async def next_number() -> int:
        push = (await good.message(timeout=20))["push"]
        return int(json.loads(base64.b64decode(push["pub"]["data"]))["n"])

    await flood_past_deaf_subscribers(http, server, deaf, next_number)


async def wait_subscribed(http: aiohttp.ClientSession, server: ServerProcess, count: int, timeout: float = 20) -> None:
    """Until the server's own count says `news` has `count` subscribers (bounded)."""

    async def reached() -> None:
        while True:
            async with http.get(f"{server.api_url}/api/channels") as response:
                channels = (await response.json()).get("channels", {})
            if channels.get("news", {}).get("subscribers", 0) >= count:
                return
            await asyncio.sleep(0.05)  # polling the server API, bounded by the timeout

    await asyncio.wait_for(reached(), timeout)
