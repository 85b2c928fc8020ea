"""In-band credential refresh: a ping carrying a token extends the connection; without one it
ends at expiry with 4403, which stock clients retry (they connect again with a new token)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hubbub.core.auth import mint_token
from hubbub.server import Server
from tests.graphql.wire import GqlWire
from tests.helpers import SECRET


async def raw(wire: GqlWire, timeout: float = 5.0) -> dict[str, object]:
    return dict(json.loads(await asyncio.wait_for(wire.ws.recv(), timeout)))


async def test_a_ping_with_a_token_extends_the_connection(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.send({"type": "connection_init", "payload": {"token": mint_token(SECRET, "alice", ttl=2)}})
    ack = await raw(wire)
    assert ack["type"] == "connection_ack"
    asked = await raw(wire)  # ahead of expiry the server asks, in a protocol ping
    assert asked["type"] == "ping"
    assert asked["payload"] in ({"refresh": True, "expires_in": 1}, {"refresh": True, "expires_in": 0})
    await wire.send({"type": "ping", "payload": {"token": mint_token(SECRET, "alice", ttl=3600)}})
    pong = await raw(wire)
    assert pong["type"] == "pong"
    assert pong["payload"]["expires_at"] > time.time() + 3000  # type: ignore[index]
    with pytest.raises(TimeoutError):  # the old expiry passes and the connection stays
        await raw(wire, timeout=2.5)
    await wire.subscribe("me", "{ me }")
    assert (await wire.recv())["payload"] == {"data": {"me": "alice"}}


async def test_a_refresh_for_another_user_or_a_bad_token_is_refused_in_the_pong(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, payload={"token": mint_token(SECRET, "alice", ttl=3600)})
    await wire.send({"type": "ping", "payload": {"token": mint_token(SECRET, "bob")}})
    pong = await wire.recv()
    assert pong["payload"]["error"]["code"] == "PERMISSION_DENIED"
    await wire.send({"type": "ping", "payload": {"token": "garbage"}})
    pong = await wire.recv()
    assert pong["type"] == "pong" and pong["payload"]["error"]["code"] in ("UNAUTHORIZED", "TOKEN_EXPIRED")
    await wire.subscribe("me", "{ me }")  # still alice, still connected
    assert (await wire.recv())["payload"] == {"data": {"me": "alice"}}


async def test_expiry_without_a_refresh_closes_4403(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, payload={"token": mint_token(SECRET, "alice", ttl=2)})
    assert await wire.close_code(timeout=5) == 4403


async def test_a_refresh_ping_before_init_is_invalid(graphql_server: Server) -> None:
    wire = await GqlWire.open(graphql_server, init=False)
    await wire.send({"type": "ping", "payload": {"token": mint_token(SECRET, "alice")}})
    assert await wire.close_code() == 4400
