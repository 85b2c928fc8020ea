"""Centrifugo's protocol on the wire, JSON and Protobuf, where the SDKs do not show it: the
server's pings, `send`, codes as the SDKs read them, and frames that belong elsewhere."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from hubbub.core.auth import mint_token
from hubbub.errors import Refuse
from hubbub.hooks import ConnectEvent, Hooks, RpcEvent
from hubbub.server import Server
from tests.centrifugo.conftest import answer
from tests.centrifugo.wire import CentrifugoWire
from tests.conftest import OpenRaw, StartServer
from tests.graphql.conftest import subscribers
from tests.helpers import SECRET


@pytest.fixture(params=["json", "protobuf"])
def protobuf(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "protobuf")


async def connected(wire: CentrifugoWire, user: str = "alice", **claims: Any) -> dict[str, Any]:
    reply = await wire.call("connect", {"token": mint_token(SECRET, user, **claims)})
    assert "error" not in reply, reply
    return dict(reply["connect"])


async def test_the_server_pings_and_ignores_pongs(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    server = await start_centrifugo(ping_interval=0.2)
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    connect = await connected(wire)
    assert (connect["ping"], connect.get("pong", False)) == (1, False)  # whole seconds; WebSocket pongs do
    assert await wire.message() == {}  # the ping: an empty reply
    await wire.send({})  # a pong, unasked: nothing to answer
    assert "ping" in await wire.call("ping")  # still connected, still in order
    assert await wire.message() == {}


async def test_send_reaches_the_rpc_hook_and_gets_no_reply(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    asked: asyncio.Queue[RpcEvent] = asyncio.Queue()

    async def rpc(event: RpcEvent) -> Any:
        await asked.put(event)
        return await answer(event)

    server = await start_centrifugo(hooks=Hooks(rpc=rpc))
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    await connected(wire)
    await wire.send({"send": {"data": wire.data({"typing": True})}})
    event = await asyncio.wait_for(asked.get(), 5)
    assert (event.method, event.user, event.data) == ("send", "alice", {"typing": True})
    reply = await wire.call("rpc", {"method": "echo", "data": wire.data(1)})
    assert "rpc" in reply  # the next message is this reply: the send's answer was never sent
    assert (await asyncio.wait_for(asked.get(), 5)).method == "echo"


async def test_replies_the_sdks_read_a_certain_way(
    centrifugo_server: Server, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
    await connected(wire)
    # The SDKs reconnect when an unsubscribe fails: one the server already ended is done.
    assert (await wire.call("unsubscribe", {"channel": "chat:never"})).get("unsubscribe") == {}
    assert (await wire.call("unsubscribe", {}))["error"]["code"] == 107  # no channel: still an error
    if not protobuf:  # a method Centrifugo's schema has no field for cannot be sent in Protobuf
        assert (await wire.call("mark_read", {"channel": "chat:x"}))["error"]["code"] == 104
    publish = await wire.call("publish", {"channel": "chat:x", "data": wire.data({"n": 1})})
    assert publish.get("publish") == {}  # hubbub's offset and epoch stay out of Centrifugo's result
    history = (await wire.call("history", {"channel": "chat:x"}))["history"]
    assert "publications" not in history and int(history["offset"]) == 1  # limit 0: the position only
    history = (await wire.call("history", {"channel": "chat:x", "limit": -1}))["history"]
    assert len(history["publications"]) == 1  # below 0: everything


async def test_a_subscription_token_expiry_is_in_the_subscribe_reply(
    centrifugo_server: Server, http: aiohttp.ClientSession, open_raw: OpenRaw, protobuf: bool
) -> None:
    token = mint_token(SECRET, "alice", ttl=3600, channel="private:plans")
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
    await connected(wire)
    subscribe = (await wire.call("subscribe", {"channel": "private:plans", "token": token}))["subscribe"]
    # The SDK refreshes at ttl: hubbub gives the moment it would ask (refresh_before early).
    assert subscribe["expires"] is True and 3500 <= int(subscribe["ttl"]) <= 3575
    raw = await open_raw(centrifugo_server, connect=False)  # hubbub's own protocol says it too
    await raw.ok("connect", {"token": mint_token(SECRET, "alice")})
    reply = await raw.ok("subscribe", {"channel": "private:plans", "token": token})
    assert reply["expires"] is True and 3590 <= reply["ttl"] <= 3600


async def test_expiry_without_refresh_ends_subscriptions_and_connections_with_sdk_codes(
    centrifugo_server: Server, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
    # mint_token counts whole seconds: a 2 s subscription token lives 1-2 s, a 4 s connection
    # token 3-4 s, so the subscription always ends first, and neither is dead on arrival.
    connect = await connected(wire, ttl=4)
    assert connect["expires"] is True and int(connect["ttl"]) == 1  # half of a short token's life
    token = mint_token(SECRET, "alice", ttl=2, channel="private:plans")
    await wire.call("subscribe", {"channel": "private:plans", "token": token})
    ended = await wire.message()  # no sub_refresh ask (the SDK has its own timer): the end
    assert ended["push"]["channel"] == "private:plans"
    assert ended["push"]["unsubscribe"]["code"] == 2500  # >= 2500: the SDK subscribes again, new token
    assert await wire.close_code() == 3005  # the connection's token expired: reconnect, new token
    pushes = [message["push"] for message in wire.received]
    assert [push["disconnect"]["code"] for push in pushes] == [3005]  # and no refresh ask before it


async def test_the_server_ending_a_subscription_stops_the_sdk(
    centrifugo_server: Server, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
    await connected(wire)
    await wire.call("subscribe", {"channel": "chat:room"})
    await subscribers(centrifugo_server, "chat:room", 1)
    await centrifugo_server.unsubscribe("alice", "chat:room")
    push = (await wire.message())["push"]
    while "unsubscribe" not in push:  # alice's own join came first
        push = (await wire.message())["push"]
    assert push["channel"] == "chat:room" and push["unsubscribe"]["code"] == 2000  # < 2500: stop


async def test_a_connect_hook_that_is_away_closes_with_a_code_that_keeps_positions(
    start_centrifugo: StartServer, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    async def away(event: ConnectEvent) -> Any:
        raise Refuse(114, "try again later", temporary=True)

    server = await start_centrifugo(hooks=Hooks(connect=away), token_secret=None)
    wire = await CentrifugoWire.open(http, server, protobuf=protobuf)
    error = (await wire.call("connect", {}))["error"]
    assert error["code"] == 114 and error["temporary"] is True
    # hubbub's 3014 tells centrifuge-js to drop every subscription's position: 3004 instead.
    assert await wire.close_code() == 3004
    assert [m["push"]["disconnect"]["code"] for m in wire.received if "push" in m] == [3004]


@pytest.mark.parametrize(
    ("path", "offered"),
    [("/connection/centrifugo", "hubbub.json.v1"), ("/connection/websocket", "centrifuge-protobuf")],
)
async def test_a_protocol_at_the_wrong_path_is_closed_3501(
    centrifugo_server: Server, http: aiohttp.ClientSession, path: str, offered: str
) -> None:
    ws = await http.ws_connect(f"ws://127.0.0.1:{centrifugo_server.port}{path}", protocols=(offered,))
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 3501
    assert "use /connection/" in str(message.extra)


async def test_the_wrong_frame_type_is_closed_1003(
    centrifugo_server: Server, http: aiohttp.ClientSession, protobuf: bool
) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
    if protobuf:
        await wire.ws.send_str('{"id":1,"connect":{}}')
    else:
        await wire.ws.send_bytes(b"\x00")
    assert await wire.close_code() == 1003


@pytest.mark.parametrize("command", [{"connect": {}}, {"id": 2**32, "connect": {}}])
async def test_a_command_without_a_usable_id_is_closed_3501(
    centrifugo_server: Server, http: aiohttp.ClientSession, command: dict[str, Any]
) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=False)  # uint32 in Protobuf: cannot be sent
    await wire.send(command)
    assert await wire.close_code() == 3501


async def test_protobuf_data_must_be_json(centrifugo_server: Server, http: aiohttp.ClientSession) -> None:
    wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=True)
    await connected(wire)
    import base64

    not_json = base64.b64encode(b"\x00\xff binary").decode()
    error = (await wire.call("publish", {"channel": "chat:x", "data": not_json}))["error"]
    assert error["code"] == 107 and "JSON" in error["message"]
    assert "publish" in await wire.call("publish", {"channel": "chat:x", "data": wire.data([1, 2])})


async def test_the_centrifugo_path_can_be_moved_or_turned_off(
    start_centrifugo: StartServer, http: aiohttp.ClientSession
) -> None:
    moved = await start_centrifugo(centrifugo_path="/sdk")
    wire = await CentrifugoWire.open(http, moved, protobuf=False, path="/sdk")
    await connected(wire)
    off = await start_centrifugo(centrifugo_path="")
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    async with http.get(f"http://127.0.0.1:{off.port}/connection/centrifugo", headers=headers) as refused:
        assert refused.status == 404


async def test_a_fan_out_is_converted_once_per_encoding(
    centrifugo_server: Server, http: aiohttp.ClientSession, open_raw: OpenRaw
) -> None:
    """Encode-once: many Centrifugo subscribers of each encoding, one conversion per batch each."""
    endpoint = centrifugo_server._endpoint
    assert endpoint is not None
    conversions: dict[str, int] = {}
    for name, frames in endpoint._frames.items():
        convert = frames._convert
        if convert is not None:

            def counting(payload: bytes, name: str = name, convert: Any = convert) -> bytes:
                conversions[name] = conversions.get(name, 0) + 1
                return bytes(convert(payload))

            frames._convert = counting
    wires = []
    for protobuf in (False, True) * 5:
        wire = await CentrifugoWire.open(http, centrifugo_server, protobuf=protobuf)
        await connected(wire)
        await wire.call("subscribe", {"channel": "chat:fan"})
        wires.append(wire)
    await subscribers(centrifugo_server, "chat:fan", 10)
    conversions.clear()
    await centrifugo_server.publish("chat:fan", {"n": 1})
    for wire in wires:
        push = (await wire.message())["push"]
        assert push["channel"] == "chat:fan"
    assert conversions == {"centrifugo-json": 1, "centrifuge-protobuf": 1}
