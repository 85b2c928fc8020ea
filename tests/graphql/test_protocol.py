"""graphql-transport-ws as PROTOCOL.md specifies it, message by message and close code by close code."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hubbub.core.auth import mint_token
from hubbub.errors import Refuse
from hubbub.hooks import ConnectDecision, ConnectEvent, Hooks
from hubbub.server import Server
from tests.conftest import StartServer
from tests.graphql.wire import SUBPROTOCOL, GqlWire, graphql_url
from tests.helpers import OTHER_SECRET, SECRET

TICKER = 'subscription { ticker(symbol: "AAPL") { symbol price } }'


async def barrier(wire: GqlWire) -> None:
    """A ping answered means every message sent before it was handled (they run in order)."""
    await wire.send({"type": "ping", "payload": {"barrier": True}})
    while (message := await wire.recv())["type"] != "pong":
        raise AssertionError(f"unexpected {message}")


async def test_init_ack_subscribe_next_complete(graphql_server: Server) -> None:
    token = mint_token(SECRET, "alice")
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.send({"type": "connection_init", "payload": {"token": token, "device": "phone"}})
    ack = await wire.recv()
    assert ack["type"] == "connection_ack" and ack["payload"]["client"]
    assert ack["payload"]["expires_at"] > 0
    await wire.subscribe("t1", TICKER)
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 1.5})
    message = await wire.recv()
    assert message["id"] == "t1" and message["type"] == "next"
    assert message["payload"]["data"] == {"ticker": {"symbol": "AAPL", "price": 1.5}}
    position = message["payload"]["extensions"]["hubbub"]
    assert position["channel"] == "ticker:AAPL" and position["offset"] == 1 and position["epoch"]
    await wire.send({"id": "t1", "type": "complete"})
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 2.5})
    await wire.subscribe("q", "{ hello }")  # the next thing to arrive is this query's, not a ticker
    assert (await wire.recv()) == {"id": "q", "type": "next", "payload": {"data": {"hello": "world"}}}
    assert (await wire.recv()) == {"id": "q", "type": "complete"}
    assert graphql_server.hub is not None
    assert graphql_server.hub.subscriber_counts().get("ticker:AAPL", 0) == 0  # the last one left


async def test_an_id_is_reusable_after_complete(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.subscribe("1", TICKER)
    await wire.send({"id": "1", "type": "complete"})
    await wire.subscribe("1", TICKER)
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 3.0})
    assert (await wire.recv())["id"] == "1"


async def test_query_and_mutation_are_single_results(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, payload={"token": mint_token(SECRET, "bob")})
    await wire.subscribe("me", "query Me { me }", operationName="Me")
    assert (await wire.recv())["payload"] == {"data": {"me": "bob"}}
    assert (await wire.recv())["type"] == "complete"
    await wire.subscribe("t", TICKER)
    await barrier(wire)
    await wire.subscribe("m", 'mutation { tick(symbol: "AAPL", price: 9.5) }')
    seen = [await wire.recv() for _ in range(3)]
    by_id = {(m["id"], m["type"]): m for m in seen}
    assert by_id[("m", "next")]["payload"] == {"data": {"tick": 1}}
    assert ("m", "complete") in by_id
    assert by_id[("t", "next")]["payload"]["data"]["ticker"]["price"] == 9.5


async def test_execution_errors_come_in_next_and_validation_errors_in_error(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.subscribe("bad", "{ nosuchfield }")
    error = await wire.recv()
    assert error["type"] == "error" and error["id"] == "bad"
    assert "nosuchfield" in error["payload"][0]["message"]
    await wire.subscribe("parse", "{ hello ")
    assert (await wire.recv())["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    await wire.subscribe("vars", 'mutation M($p: Float!) { tick(symbol: "A", price: $p) }', variables={"p": "x"})
    message = await wire.recv()
    assert message["type"] == "next" and message["payload"]["errors"]
    assert (await wire.recv())["type"] == "complete"


async def test_a_refused_channel_is_an_error_for_that_operation_only(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.subscribe("s", 'subscription { secret(name: "x") }')
    error = await wire.recv()
    assert error["type"] == "error" and error["payload"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    await wire.subscribe("t", TICKER)  # the connection goes on
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 1.0})
    assert (await wire.recv())["id"] == "t"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"type": "nonsense"}, "unknown type"),
        ({"payload": {}}, "no type"),
        ({"type": "subscribe", "id": "", "payload": {"query": "{ hello }"}}, "empty id"),
        ({"type": "subscribe", "id": "1", "payload": {"query": 5}}, "query not a string"),
        ({"type": "subscribe", "id": "1"}, "no payload"),
        ({"type": "next", "id": "1", "payload": {}}, "a server message from the client"),
        ({"type": "complete"}, "complete without id"),
        (
            {
                "type": "subscribe",
                "id": "1",
                "payload": {"query": "{hello}", "extensions": {"hubbub": {"offset": "x"}}},
            },
            "bad position",
        ),
    ],
)
async def test_an_invalid_message_closes_4400(graphql_server: Server, message: dict[str, object], why: str) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.send(message)
    assert await wire.close_code() == 4400, why


async def test_not_json_and_binary_frames_close_4400(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.ws.send("{not json")
    assert await wire.close_code() == 4400
    wire = await GqlWire.open(graphql_server)
    await wire.ws.send(b'{"type":"ping"}')
    assert await wire.close_code() == 4400


async def test_subscribe_before_ack_closes_4401(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.subscribe("1", TICKER)
    assert await wire.close_code() == 4401


async def test_refused_init_closes_4403(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.send({"type": "connection_init", "payload": {"token": mint_token(OTHER_SECRET, "mallory")}})
    assert await wire.close_code() == 4403
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.send({"type": "connection_init", "payload": {"Authorization": "Bearer not-a-token"}})
    assert await wire.close_code() == 4403


async def test_a_bearer_authorization_in_the_payload_is_a_token(graphql_server: Server) -> None:
    token = mint_token(SECRET, "carol")
    wire = await GqlWire.open(graphql_server, payload={"authorization": f"Bearer {token}"})
    await wire.subscribe("me", "{ me }")
    assert (await wire.recv())["payload"] == {"data": {"me": "carol"}}


async def test_no_init_in_time_closes_4408(start_graphql: StartServer) -> None:
    server = await start_graphql(graphql_init_timeout=0.2)
    wire = await GqlWire.open(server, init=False)
    assert await wire.close_code() == 4408


async def test_a_duplicate_running_id_closes_4409(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.subscribe("1", TICKER)
    await wire.subscribe("1", TICKER)
    assert await wire.close_code() == 4409


async def test_a_second_init_closes_4429(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.send({"type": "connection_init"})
    assert await wire.close_code() == 4429


async def test_without_the_subprotocol_the_upgrade_closes_4406(graphql_server: Server) -> None:
    async with connect(graphql_url(graphql_server), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406
    # ...and graphql-transport-ws is not hubbub's own protocol: the WebSocket path refuses it too
    async with connect(graphql_server.url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


async def test_without_a_schema_the_path_is_not_found(start_server: StartServer) -> None:
    server = await start_server()
    with pytest.raises(InvalidStatus) as refused:
        await connect(graphql_url(server), subprotocols=[SUBPROTOCOL], open_timeout=5)  # type: ignore[list-item]
    assert refused.value.response.status_code == 404


async def test_the_path_is_a_setting(start_graphql: StartServer) -> None:
    server = await start_graphql(graphql_path="/api/graphql")
    wire = await GqlWire.open(server, path="/api/graphql")
    await wire.subscribe("1", "{ hello }")
    assert (await wire.recv())["payload"] == {"data": {"hello": "world"}}


async def test_pings_both_ways(start_graphql: StartServer) -> None:
    server = await start_graphql(ping_interval=0.2, ping_timeout=5.0)
    wire = await GqlWire.open(server)
    await wire.send({"type": "ping", "payload": {"n": 1}})
    assert await wire.recv() == {"type": "pong", "payload": {"n": 1}}
    await wire.send({"type": "ping"})
    assert await wire.recv() == {"type": "pong"}
    # the server's own protocol ping (beside its WebSocket ping, which websockets answers)
    ping = json.loads(await asyncio.wait_for(wire.ws.recv(), 5))
    assert ping == {"type": "ping"}
    await wire.send({"type": "pong"})  # answered; an unsolicited pong is fine too
    await wire.send({"type": "pong", "payload": {"any": "thing"}})
    await barrier(wire)


async def test_completing_an_unknown_id_is_ignored(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.send({"id": "never", "type": "complete"})
    await barrier(wire)


async def test_the_connect_hook_decides_a_graphql_connection(start_graphql: StartServer) -> None:
    """Without a token, connection_init goes to the application's connect hook: transport
    "graphql", the payload as `data`, the allow-listed headers; a refusal closes 4403."""
    seen: list[ConnectEvent] = []

    async def connect(event: ConnectEvent) -> ConnectDecision:
        seen.append(event)
        if event.data.get("ticket") != "ok":
            raise Refuse(1001, "no ticket")
        return ConnectDecision(user="hooked")

    server = await start_graphql(hooks=Hooks(connect=connect), hook_forward_headers="user-agent")
    wire = await GqlWire.open(server, payload={"ticket": "ok"})
    await wire.subscribe("me", "{ me }")
    assert (await wire.recv())["payload"] == {"data": {"me": "hooked"}}
    assert seen[0].transport == "graphql" and seen[0].data == {"ticket": "ok"}
    assert "user-agent" in seen[0].headers
    refused = await GqlWire.open(server, init=False)
    await refused.send({"type": "connection_init", "payload": {"ticket": "forged"}})
    assert await refused.close_code() == 4403


async def test_a_foreign_origin_is_refused_at_the_upgrade(graphql_server: Server) -> None:
    """The WebSocket endpoint's checks hold here too: a page of another site gets 403."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            graphql_url(graphql_server),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            origin="http://evil.example",  # type: ignore[arg-type]
            open_timeout=5,
        )
    assert refused.value.response.status_code == 403


async def test_the_server_api_ending_a_subscription_ends_its_operations(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, payload={"token": mint_token(SECRET, "ula")})
    await wire.subscribe("t", TICKER)
    await barrier(wire)
    assert await graphql_server.unsubscribe("ula", "ticker:AAPL") == 1
    error = await wire.recv()
    assert error["id"] == "t" and error["type"] == "error"
    assert error["payload"][0]["extensions"] == {"code": "UNSUBSCRIBED", "channel": "ticker:AAPL"}
    await wire.subscribe("t", TICKER)  # the id is free again, and the channel may be followed again
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 1.0})
    assert (await wire.recv())["id"] == "t"


async def test_a_failing_subscription_resolver_is_an_error(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server)
    await wire.subscribe("b", "subscription { broken }")
    error = await wire.recv()
    assert error["type"] == "error" and error["payload"][0]["message"] == "this feed is closed"


async def test_a_connect_hook_that_does_not_answer_closes_3014(start_graphql: StartServer) -> None:
    """A temporary refusal (the application is down) is a close the client retries later."""

    async def connect(_: ConnectEvent) -> ConnectDecision:
        await asyncio.Event().wait()  # never answers
        return ConnectDecision()

    server = await start_graphql(hooks=Hooks(connect=connect), hook_timeout=0.2)
    wire = await GqlWire.open(server, init=False)
    await wire.send({"type": "connection_init"})
    assert await wire.close_code() == 3014


async def test_server_side_subscriptions_leave_graphql_connections_alone(graphql_server: Server) -> None:
    """A GraphQL client receives only what its own operations name: a token's `channels` and the
    server API's subscribe do not subscribe its connection (the publications would have nowhere
    to go), so an operation on such a channel works as on any other."""
    import jwt

    assert graphql_server.hub is not None
    hub = graphql_server.hub
    claims = {"sub": "alice", "channels": ["ticker:AAPL"]}
    wire = await GqlWire.open(graphql_server, payload={"token": jwt.encode(claims, SECRET, algorithm="HS256")})
    await barrier(wire)
    await hub.wait_spawned()  # every subscription the server itself would have started is done
    assert hub.subscriber_counts().get("ticker:AAPL", 0) == 0
    await graphql_server.subscribe("alice", "ticker:MSFT")
    await hub.wait_spawned()
    assert hub.subscriber_counts().get("ticker:MSFT", 0) == 0
    await wire.subscribe("t1", TICKER)
    await barrier(wire)
    await graphql_server.publish("ticker:AAPL", {"symbol": "AAPL", "price": 2.5})
    message = await wire.recv()
    assert message["id"] == "t1" and message["payload"]["data"] == {"ticker": {"symbol": "AAPL", "price": 2.5}}
