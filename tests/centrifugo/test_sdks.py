"""Centrifugo's SDKs, unchanged, against hubbub: centrifuge-python (JSON, Protobuf) and
centrifuge-js in Node.js and in chromium (JSON and Protobuf builds). Each test runs once per
kind of client (conftest.KINDS); docs/centrifugo-sdks.md's feature table is these tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from hubbub.core.auth import mint_token
from hubbub.core.session import Session
from hubbub.hooks import ConnectDecision, ConnectEvent, Hooks, RefreshDecision, RefreshEvent
from hubbub.server import Server
from tests.centrifugo.apps import App, Event
from tests.centrifugo.conftest import OpenApp, RestartableNode, answer
from tests.conftest import OpenRaw, StartServer
from tests.graphql.conftest import subscribers
from tests.helpers import SECRET


def event(name: str, **fields: Any) -> Any:
    return lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())


async def connected(app: App) -> Event:
    await app.send(op="connect")
    return await app.event(event("connected"))


async def subscribed(app: App, channel: str, tokens: list[str] | None = None) -> Event:
    await app.send(op="subscribe", channel=channel, tokens=tokens or [])
    return await app.event(event("subscribed", channel=channel))


def result(answer: Event) -> Any:
    assert "error" not in answer, answer
    return answer["result"]


async def test_the_everyday_features(centrifugo_server: Server, open_app: OpenApp, open_raw: OpenRaw) -> None:
    server = centrifugo_server
    app = await open_app(server, tokens=[mint_token(SECRET, "alice")])
    await connected(app)
    assert (await subscribed(app, "chat:lobby"))["recoverable"] is True

    # A hubbub JSON client on the same channel: the same publications, the same offsets.
    bob = await open_raw(server, connect=False)
    await bob.ok("connect", {"token": mint_token(SECRET, "bob")})
    await bob.ok("subscribe", {"channel": "chat:lobby"})
    assert (await app.event(event("join", channel="chat:lobby", user="bob")))["client"]

    result(await app.call("publish", channel="chat:lobby", data={"text": "hi"}))
    mine = await app.event(event("publication", channel="chat:lobby"))
    theirs = await bob.next_publication()
    assert (mine["data"], mine["user"]) == ({"text": "hi"}, "alice")
    assert (theirs["data"], theirs["offset"]) == ({"text": "hi"}, mine["offset"])
    await server.publish("chat:lobby", {"text": "from the server"})
    second = await app.event(event("publication", channel="chat:lobby"))
    assert (second["data"], second["offset"]) == ({"text": "from the server"}, mine["offset"] + 1)
    assert (await bob.next_publication())["offset"] == second["offset"]

    history = result(await app.call("history", channel="chat:lobby", limit=10))
    assert [(p["data"], p["offset"]) for p in history["publications"]] == [
        ({"text": "hi"}, mine["offset"]),
        ({"text": "from the server"}, second["offset"]),
    ]
    assert history["offset"] == second["offset"] and history["epoch"]
    presence = result(await app.call("presence", channel="chat:lobby"))
    assert sorted(info["user"] for info in presence["clients"].values()) == ["alice", "bob"]
    assert result(await app.call("presence_stats", channel="chat:lobby")) == {"num_clients": 2, "num_users": 2}

    await bob.ok("unsubscribe", {"channel": "chat:lobby"})
    assert (await app.event(event("leave", channel="chat:lobby", user="bob")))["client"]

    answer = result(await app.call("rpc", method="echo", data={"n": 1}))
    assert answer == {"data": {"method": "echo", "user": "alice", "data": {"n": 1}}}

    await app.send(op="subscribe", channel="secret:plans")  # namespace `secret`: subscribe = server
    refused = await app.event(event("unsubscribed", channel="secret:plans"))
    assert refused["code"] == 103
    stranger = result(await app.call("presence", channel="chat:lobby"))  # the connection goes on
    assert len(stranger["clients"]) == 1


async def test_rpc_without_a_hook_is_not_available(start_centrifugo: Any, open_app: OpenApp) -> None:
    from hubbub.hooks import Hooks

    server = await start_centrifugo(hooks=Hooks())
    app = await open_app(server, tokens=[mint_token(SECRET, "alice")])
    await connected(app)
    answer = await app.call("rpc", method="echo", data={})
    assert answer["error"]["code"] == 108


async def test_a_subscription_token_and_its_refresh(centrifugo_server: Server, open_app: OpenApp) -> None:
    server = centrifugo_server
    app = await open_app(server, tokens=[mint_token(SECRET, "alice")])
    await connected(app)
    await app.send(op="subscribe", channel="private:alice")  # no token: subscribe = token
    assert (await app.event(event("unsubscribed", channel="private:alice")))["code"] == 103

    short = mint_token(SECRET, "alice", ttl=4, channel="private:plans")
    long = mint_token(SECRET, "alice", ttl=3600, channel="private:plans")
    await subscribed(app, "private:plans", tokens=[short, long])
    assert server.hub is not None
    session = only_session(server)
    first_expiry = session.grants["private:plans"]
    assert first_expiry is not None and first_expiry < time.time() + 10
    # The SDK refreshes on its own timer, at the ttl hubbub gave (half of a short token's life).
    await app.event(event("token", kind="subscription", channel="private:plans"))
    await app.event(event("token", kind="subscription", channel="private:plans"))
    await until(lambda: (session.grants.get("private:plans") or 0) > time.time() + 3000)
    result(await app.call("publish", channel="private:plans", data={"still": "here"}))
    assert (await app.event(event("publication", channel="private:plans")))["data"] == {"still": "here"}
    ended = [e for e in app.log.seen if e["event"] == "disconnected" or e.get("channel") == "private:plans"]
    assert not [e for e in ended if e["event"] in ("unsubscribed", "disconnected")]


async def test_token_refresh_keeps_the_connection(centrifugo_server: Server, open_app: OpenApp) -> None:
    server = centrifugo_server
    app = await open_app(server, tokens=[mint_token(SECRET, "alice", ttl=4), mint_token(SECRET, "alice", ttl=3600)])
    await connected(app)
    assert server.hub is not None
    session = only_session(server)
    assert (session.credentials.expires_at or 0) < time.time() + 10
    await app.event(event("token", kind="connection"))  # connecting
    await app.event(event("token", kind="connection"))  # refreshing, ahead of exp
    await until(lambda: (session.credentials.expires_at or 0) > time.time() + 3000)
    assert only_session(server) is session  # the same connection, refreshed in band
    assert not [e for e in app.log.seen if e["event"] == "disconnected"]


async def test_an_expired_token_is_replaced(centrifugo_server: Server, open_app: OpenApp) -> None:
    expired = mint_token(SECRET, "alice", ttl=-10)
    app = await open_app(centrifugo_server, tokens=[expired, mint_token(SECRET, "alice")])
    await app.send(op="connect")
    await app.event(event("connected"))
    tokens_asked = [e for e in app.log.seen if e["event"] == "token"]
    assert len(tokens_asked) == 2  # the SDK took 109 (token expired) as "get a new token"


async def test_server_side_subscriptions(centrifugo_server: Server, open_app: OpenApp) -> None:
    """A token's `channels`, and the server API's subscribe and unsubscribe, reach the SDK as its
    server-side subscriptions."""
    server = centrifugo_server
    claims = {"sub": "alice", "channels": ["chat:news"], "exp": int(time.time()) + 3600}
    app = await open_app(server, tokens=[jwt.encode(claims, SECRET, algorithm="HS256")])
    await connected(app)
    await app.event(event("server_subscribed", channel="chat:news"))
    await subscribers(server, "chat:news", 1)
    await server.publish("chat:news", {"n": 1})
    assert (await app.event(event("server_publication", channel="chat:news")))["data"] == {"n": 1}
    await server.subscribe("alice", "chat:later")
    await app.event(event("server_subscribed", channel="chat:later"))
    await subscribers(server, "chat:later", 1)
    await server.publish("chat:later", {"n": 2})
    assert (await app.event(event("server_publication", channel="chat:later")))["data"] == {"n": 2}
    await server.unsubscribe("alice", "chat:later")
    await app.event(event("server_unsubscribed", channel="chat:later"))


async def test_recovery_after_the_server_restarts(restartable: RestartableNode, open_app: OpenApp) -> None:
    channel = restartable.channel
    app = await open_app(restartable.node, tokens=[mint_token(SECRET, "alice")])
    await connected(app)
    await subscribed(app, channel)
    await subscribers(restartable.node, channel, 1)
    await restartable.publisher.publish(channel, {"n": 1})
    first = await app.event(event("publication", channel=channel))
    await restartable.node.close()
    await app.event(event("subscribing", channel=channel))
    for n in (2, 3, 4):  # while the node is down
        await restartable.publisher.publish(channel, {"n": n})
    await restartable.restart()
    again = await app.event(event("subscribed", channel=channel))
    assert again["recovered"] is True and again["was_recovering"] is True
    missed = [await app.event(event("publication", channel=channel)) for _ in range(3)]
    assert [(p["data"]["n"], p["offset"]) for p in missed] == [(n, first["offset"] + n - 1) for n in (2, 3, 4)]
    await restartable.publisher.publish(channel, {"n": 5})
    assert (await app.event(event("publication", channel=channel)))["data"] == {"n": 5}
    offsets = [e["offset"] for e in app.log.seen if e["event"] == "publication"]
    assert offsets == sorted(set(offsets))  # every one once, in order


def only_session(server: Server) -> Session:
    assert server.hub is not None
    (session,) = server.hub.sessions.values()
    assert isinstance(session, Session)
    return session


async def until(condition: Any, timeout: float = 15.0) -> None:
    """Until `condition()` holds on server state we own (bounded)."""

    async def reached() -> None:
        while not condition():  # noqa: ASYNC110 - the session has no event for it
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reached(), timeout)


async def test_server_side_subscriptions_recover_after_a_restart(
    restartable: RestartableNode, open_app: OpenApp
) -> None:
    """The SDK sends its server-side subscriptions' positions in its connect command: what they
    missed comes back, once each, in order, after the server's subscribe."""
    channel = restartable.channel
    claims = {"sub": "alice", "channels": [channel], "exp": int(time.time()) + 3600}
    app = await open_app(restartable.node, tokens=[jwt.encode(claims, SECRET, algorithm="HS256")])
    await connected(app)
    await app.event(event("server_subscribed", channel=channel))
    await subscribers(restartable.node, channel, 1)
    await restartable.publisher.publish(channel, {"n": 1})
    first = await app.event(event("server_publication", channel=channel))
    await restartable.node.close()
    await app.event(event("connecting"))
    for n in (2, 3):  # while the node is down
        await restartable.publisher.publish(channel, {"n": n})
    await restartable.restart()
    missed = [await app.event(event("server_publication", channel=channel)) for _ in range(2)]
    assert [(p["data"]["n"], p["offset"]) for p in missed] == [(2, first["offset"] + 1), (3, first["offset"] + 2)]


async def test_a_connection_the_connect_hook_decides_is_refreshed_by_the_server(
    start_centrifugo: StartServer, open_app: OpenApp
) -> None:
    """No token, no getToken: the connect hook admits the SDK for 2 seconds and the refresh hook
    extends it. The SDK is not told to refresh (it could not) and stays connected."""
    refreshed = asyncio.Event()

    async def connect(_: ConnectEvent) -> ConnectDecision:
        return ConnectDecision(user="alice", expires_at=time.time() + 2)

    async def refresh(_: RefreshEvent) -> RefreshDecision:
        refreshed.set()
        return RefreshDecision(expires_at=time.time() + 3600)

    server = await start_centrifugo(hooks=Hooks(connect=connect, refresh=refresh, rpc=answer))
    app = await open_app(server)
    await connected(app)
    await asyncio.wait_for(refreshed.wait(), 10)
    session = only_session(server)
    await until(lambda: (session.credentials.expires_at or 0) > time.time() + 3000)
    answered = result(await app.call("rpc", method="who", data=None))
    assert answered["data"]["user"] == "alice"
    assert only_session(server) is session
    assert not [e for e in app.log.seen if e["event"] in ("disconnected", "error", "token")]


async def test_a_message_to_the_user_reaches_the_sdk(
    centrifugo_server: Server, open_app: OpenApp, request: pytest.FixtureRequest
) -> None:
    """The server API's `send` to a user is a `message` push: centrifuge-js emits it;
    centrifuge-python has no handler for it and goes on unharmed."""
    app = await open_app(centrifugo_server, tokens=[mint_token(SECRET, "alice")])
    await connected(app)
    await centrifugo_server.send("alice", {"note": "hello"})
    if "python" in request.node.callspec.id:
        assert result(await app.call("rpc", method="still", data=None))["data"]["user"] == "alice"
    else:
        assert (await app.event(event("message")))["data"] == {"note": "hello"}
