"""The WebSocket endpoint over real sockets, driven by a client that shares no code with ours."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import aiohttp
import jsonschema
import pytest
from msgspec import Raw

from hubbub.errors import DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import OpenRaw, RawClient, StartServer, TrafficLog
from tests.wire import BareWebSocket


async def api_publish(http: aiohttp.ClientSession, server: Server, channel: str, data: Any) -> dict[str, Any]:
    async with http.post(f"{server.api_url}/api/publish", json={"channel": channel, "data": data}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_subscribe_and_receive_a_publication(
    server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    client = await open_raw(server)
    assert client.ws.protocol == "hubbub.json.v1"
    subscribed = await client.ok("subscribe", {"channel": "news"})
    assert subscribed["recoverable"] is True and subscribed["offset"] == 0
    await api_publish(http, server, "news", {"text": "hello"})
    publication = await client.next_publication()
    assert publication["data"] == {"text": "hello"} and publication["offset"] == 1


async def test_client_offering_no_subprotocol_gets_json(server: Server, open_raw: OpenRaw) -> None:
    client = await open_raw(server, protocols=())
    assert client.ws.protocol is None
    assert await client.ok("ping") == {}


async def test_client_offering_only_unknown_subprotocols_is_refused(
    server: Server, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(server.url, protocols=("mqtt",))
    assert caught.value.status == 400


async def test_other_paths_are_404_and_health_answers(server: Server, http: aiohttp.ClientSession) -> None:
    base = f"http://127.0.0.1:{server.port}"
    async with http.get(f"{base}/health") as response:
        assert response.status == 200 and (await response.json()) == {"status": "ok"}
    async with http.get(f"{base}/nope") as response:
        assert response.status == 404


async def test_several_commands_in_one_frame_each_get_a_reply(server: Server, open_raw: OpenRaw) -> None:
    client = await open_raw(server)
    await client.send_raw('{"id":10,"ping":{}}\n{"id":11,"subscribe":{"channel":"news"}}')
    assert "ping" in await client.reply(10)
    assert "subscribe" in await client.reply(11)


async def test_queued_publications_are_coalesced_into_fewer_frames(
    server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    """A burst published in one loop turn reaches a subscriber in one frame, not one per message."""
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "feed:prices"})
    frames_before = client.frames
    async with http.post(
        f"{server.api_url}/api/broadcast", json={"channels": ["feed:prices"] * 50, "data": 1}
    ) as response:
        assert response.status == 200
    for _ in range(50):
        await client.next_publication()
    assert client.frames - frames_before < 50


# ---- bad input: exact answer, and a good client on the same server keeps receiving ---------


async def _malformed_json(client: RawClient) -> None:
    await client.send_raw("{not json")


async def _unknown_command(client: RawClient) -> None:
    reply = await client.call("frobnicate", {})
    assert reply["error"]["code"] == ErrorCode.METHOD_NOT_FOUND and reply["error"]["temporary"] is False


async def _unknown_namespace(client: RawClient) -> None:
    reply = await client.call("subscribe", {"channel": "nowhere:x"})
    assert reply["error"]["code"] == ErrorCode.UNKNOWN_CHANNEL


async def _oversize_frame(client: RawClient) -> None:
    await client.send_raw(json.dumps({"id": 1, "publish": {"channel": "news", "data": "x" * 70_000}}))


async def _binary_frame(client: RawClient) -> None:
    await client.send_raw(b'{"id":1,"ping":{}}')


async def _command_before_connect(client: RawClient) -> None:
    reply = await client.call("subscribe", {"channel": "news"})
    assert reply["error"] == {"code": ErrorCode.NOT_CONNECTED, "message": "send connect first", "temporary": False}


@pytest.mark.parametrize(
    ("misbehave", "connect", "close_code"),
    [
        (_malformed_json, True, DisconnectCode.BAD_REQUEST),
        (_unknown_command, True, None),
        (_unknown_namespace, True, None),
        (_oversize_frame, True, DisconnectCode.MESSAGE_TOO_BIG),
        (_binary_frame, True, DisconnectCode.UNSUPPORTED_DATA),
        (_command_before_connect, False, None),
    ],
    ids=["malformed-json", "unknown-command", "unknown-namespace", "oversize-frame", "binary-frame", "before-connect"],
)
async def test_bad_input_gets_its_documented_answer_while_others_keep_receiving(
    server: Server,
    open_raw: OpenRaw,
    http: aiohttp.ClientSession,
    misbehave: Any,
    connect: bool,
    close_code: int | None,
) -> None:
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    bad = await open_raw(server, connect=connect)
    await api_publish(http, server, "news", 1)
    await misbehave(bad)
    await api_publish(http, server, "news", 2)
    if close_code is not None:
        assert await bad.close_code() == close_code
    else:  # the connection survives and keeps working
        if not connect:
            await bad.ok("connect")
        assert await bad.ok("ping") == {}
    await api_publish(http, server, "news", 3)
    assert [(await good.next_publication())["data"] for _ in range(3)] == [1, 2, 3]


async def test_client_that_never_connects_is_closed_with_3502(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(connect_timeout=0.3)
    client = await open_raw(server, connect=False)
    assert await client.close_code() == DisconnectCode.CONNECT_TIMEOUT


async def test_client_that_ignores_pings_is_closed(start_server: StartServer, open_raw: OpenRaw) -> None:
    """No pong within ping_timeout -> the server closes the connection (1011, keepalive timeout)."""
    server = await start_server(ping_interval=0.2, ping_timeout=0.2)
    client = await open_raw(server, autoping=False)
    assert await client.close_code() == DisconnectCode.INTERNAL_ERROR


async def test_client_answering_pings_stays(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    server = await start_server(ping_interval=0.1, ping_timeout=0.5)
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "news"})
    for i in range(5):  # each round trip spans at least one ping interval on a loaded machine or not
        await api_publish(http, server, "news", i)
        assert (await client.next_publication())["data"] == i
    assert await client.ok("ping") == {}


async def test_slow_consumer_is_closed_with_3008_and_fast_one_gets_everything(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    """A client that stops reading is cut with 3008 once its outbox passes max_outbox_bytes."""
    server = await start_server(max_outbox_bytes=256 * 1024)
    hub = server.hub
    assert hub is not None
    fast = await open_raw(server)
    await fast.ok("subscribe", {"channel": "feed:x"})
    slow = await BareWebSocket.open(server.url)
    await slow.send_json({"id": 1, "connect": {}})
    await slow.send_json({"id": 2, "subscribe": {"channel": "feed:x"}})
    received: list[dict[str, Any]] = []
    while not any(m.get("id") == 2 for m in received):
        received += await slow.read_messages()
    slow_id = next(client for client in hub.sessions if client not in fast_ids(hub, 1))
    payload = Raw(json.dumps("x" * 4000).encode())
    sent = 0
    # The slow client reads nothing more: kernel buffers fill, then its outbox passes the budget.
    while slow_id in hub.sessions and sent < 5_000:
        await hub.publish("feed:x", payload)
        sent += 1
        if sent % 20 == 0:  # the fast client keeps up
            for _ in range(20):
                await fast.next_publication()
    assert slow_id not in hub.sessions, "slow consumer was never cut"
    assert await slow.close_code() == DisconnectCode.SLOW_CONSUMER
    for _ in range(sent % 20):
        await fast.next_publication()
    await hub.publish("feed:x", Raw(b'"after"'))
    assert (await fast.next_publication())["data"] == "after"
    slow.close()


def fast_ids(hub: Any, count: int) -> list[str]:
    """Ids of the first `count` sessions that connected."""
    return list(hub.sessions)[:count]


async def test_traffic_matches_the_published_json_schema(
    server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession, traffic: TrafficLog
) -> None:
    """Every message of a session using every command validates against schemas/protocol.json."""
    alice = await open_raw(server)
    bob = await open_raw(server)
    await alice.ok("subscribe", {"channel": "chat:room"})
    await bob.ok("subscribe", {"channel": "chat:room"})
    await alice.ok("publish", {"channel": "chat:room", "data": {"text": "hi"}})
    await bob.next_publication()
    await alice.ok("history", {"channel": "chat:room", "limit": 10})
    await alice.ok("presence", {"channel": "chat:room"})
    await alice.ok("send", {"user": "nobody", "data": 1})
    await alice.ok("ping")
    await bob.ok("unsubscribe", {"channel": "chat:room"})
    await alice.call("subscribe", {"channel": "nowhere:x"})
    await alice.call("refresh", {"token": "x"})
    top = await alice.ok("history", {"channel": "chat:room", "limit": 0})
    carol = await open_raw(server)
    await carol.ok("subscribe", {"channel": "chat:room", "since": {"offset": 0, "epoch": top["epoch"]}})
    await alice.next_message()  # carol's join reaches alice
    assert server.hub is not None
    await server.hub.disconnect_user("")  # anonymous users: everyone gets a disconnect push
    await alice.close_code()

    schema = json.loads(resources.files("hubbub").joinpath("schemas/protocol.json").read_text())
    defs = schema["$defs"]
    jsonschema.Draft202012Validator.check_schema(schema)
    client_schema = jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/client_message"})
    server_schema = jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/server_message"})
    for message in traffic.sent:
        client_schema.validate(message)
    kinds = set()
    for message in traffic.received + alice.pushes + bob.pushes:
        server_schema.validate(message)
        kinds.add(next(iter(message["push"])) if "push" in message else next(k for k in message if k != "id"))
    assert {"connect", "subscribe", "publish", "history", "presence", "send", "ping", "unsubscribe", "error"} <= kinds
    assert "stream_position" in defs
