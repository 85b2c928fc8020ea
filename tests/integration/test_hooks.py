"""Application hooks on a real server: in-process callables (sync and async) decide connects,
subscribes, publishes and RPCs, hear disconnects and unsubscribes; failures give clear errors."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from hubbub import (
    ConnectDecision,
    ConnectEvent,
    DisconnectEvent,
    Hooks,
    PublishDecision,
    PublishEvent,
    RefreshDecision,
    RefreshEvent,
    Refuse,
    RpcEvent,
    SubscribeDecision,
    SubscribeEvent,
    UnsubscribeEvent,
)
from hubbub.core.auth import mint_token
from tests.conftest import OpenRaw, StartServer
from tests.helpers import SECRET


def sessions_hook(users: dict[str, str], channels: list[str] | None = None) -> Any:
    """A connect hook that knows users by a session cookie, as a web app's would."""

    async def connect(event: ConnectEvent) -> ConnectDecision:
        cookie = event.headers.get("cookie", "")
        session = cookie.removeprefix("session=")
        if session not in users:
            raise Refuse(103, "not signed in")
        return ConnectDecision(user=users[session], info={"name": users[session].title()}, channels=channels or [])

    return connect


async def test_connect_hook_names_the_user_from_the_cookie_and_data(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    seen: list[ConnectEvent] = []

    async def connect(event: ConnectEvent) -> ConnectDecision:
        seen.append(event)
        return ConnectDecision(user="alice", info={"plan": event.data["plan"]})

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect))
    client = await open_raw(server, connect=False, headers={"Cookie": "session=s1", "X-Other": "no"})
    result = await client.ok("connect", {"data": {"plan": "pro"}})
    assert result["client"] == seen[0].client
    assert seen[0].headers == {"cookie": "session=s1"}  # only the allow-listed headers
    assert seen[0].remote == "127.0.0.1"
    await client.ok("subscribe", {"channel": "chat:room"})
    presence = await client.ok("presence", {"channel": "chat:room"})
    (entry,) = presence["clients"].values()
    assert entry["user"] == "alice" and entry["info"] == {"plan": "pro"}


async def test_a_token_still_goes_to_the_jwt_check_unless_the_hook_is_asked_always(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    calls: list[ConnectEvent] = []

    def connect(event: ConnectEvent) -> ConnectDecision:  # a plain function: runs in a thread
        calls.append(event)
        assert threading.current_thread() is not threading.main_thread()
        return ConnectDecision(user="from-hook")

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect))
    client = await open_raw(server, connect=False)
    await client.ok("connect", {"token": mint_token(SECRET, "bob", ttl=60)})
    assert calls == []
    always = await start_server(token_secret=SECRET, connect_hook_always=True, hooks=Hooks(connect=connect))
    other = await open_raw(always, connect=False)
    await other.ok("connect", {"token": "whatever"})
    assert calls[0].token == "whatever"


async def test_a_refused_connect_gets_the_apps_code_and_close_3505(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    async def connect(event: ConnectEvent) -> ConnectDecision:
        raise Refuse(1042, "account suspended")

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect))
    client = await open_raw(server, connect=False)
    reply = await client.call("connect", {})
    assert reply["error"] == {"code": 1042, "message": "account suspended", "temporary": False}
    assert await client.close_code() == 3505


@pytest.mark.parametrize("failure", ["raises", "times out", "answers garbage"])
async def test_a_failing_connect_hook_is_a_temporary_114_and_close_3014(
    start_server: StartServer, open_raw: OpenRaw, failure: str
) -> None:
    release = asyncio.Event()

    async def connect(event: ConnectEvent) -> Any:
        if failure == "raises":
            raise RuntimeError("database down")
        if failure == "times out":
            await release.wait()
        return {"user": "not a decision"}

    server = await start_server(token_secret=SECRET, hook_timeout=0.2, hooks=Hooks(connect=connect))
    client = await open_raw(server, connect=False)
    reply = await client.call("connect", {})
    release.set()
    assert reply["error"]["code"] == 114 and reply["error"]["temporary"] is True
    assert await client.close_code() == 3014
    assert server.hub is not None
    kind = {"raises": "error", "times out": "timeout", "answers garbage": "bad_answer"}[failure]
    assert server.hub.stats.hook_errors[("connect", kind)] == 1
    assert server.hub.stats.hook_latency["connect"].count == 1


async def test_subscribe_hook_allows_with_channel_info_or_refuses(start_server: StartServer, open_raw: OpenRaw) -> None:
    async def subscribe(event: SubscribeEvent) -> SubscribeDecision | None:
        if event.channel == "chat:secret":
            raise Refuse(103, "not a member")
        return SubscribeDecision(info={"role": event.data["role"]})

    server = await start_server(hooks=Hooks(subscribe=subscribe))
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "chat:room", "data": {"role": "moderator"}})
    presence = await client.ok("presence", {"channel": "chat:room"})
    assert next(iter(presence["clients"].values()))["chan_info"] == {"role": "moderator"}
    refused = await client.call("subscribe", {"channel": "chat:secret"})
    assert refused["error"]["code"] == 103 and refused["error"]["message"] == "not a member"


async def test_subscribe_hook_replaces_the_namespace_rule(start_server: StartServer, open_raw: OpenRaw) -> None:
    """`feed` lets nobody publish and `user:` is owner-only by rule; with the hook, the app decides."""

    async def subscribe(event: SubscribeEvent) -> None:
        return None  # allow

    server = await start_server(
        token_secret=SECRET, hooks=Hooks(connect=sessions_hook({"s": "alice"}), subscribe=subscribe)
    )
    client = await open_raw(server, connect=False, headers={"Cookie": "session=s"})
    await client.ok("connect", {})
    await client.ok("subscribe", {"channel": "feed:anything"})


async def test_publish_hook_replaces_the_data_before_history(start_server: StartServer, open_raw: OpenRaw) -> None:
    stored: list[PublishEvent] = []

    async def publish(event: PublishEvent) -> PublishDecision | None:
        if "spam" in event.data["text"]:
            raise Refuse(1001, "looks like spam")
        stored.append(event)
        return PublishDecision(data={**event.data, "id": f"msg-{len(stored)}"})  # the app's own id

    server = await start_server(hooks=Hooks(publish=publish))
    reader, writer = await open_raw(server), await open_raw(server)
    await reader.ok("subscribe", {"channel": "chat:room"})
    await writer.ok("publish", {"channel": "chat:room", "data": {"text": "hello"}})
    assert (await reader.next_publication())["data"] == {"text": "hello", "id": "msg-1"}
    refused = await writer.call("publish", {"channel": "chat:room", "data": {"text": "buy spam"}})
    assert refused["error"] == {"code": 1001, "message": "looks like spam", "temporary": False}
    history = await server.history("chat:room")
    assert [bytes(p.data) for p in history.publications] == [b'{"text":"hello","id":"msg-1"}']


async def test_rpc_is_answered_by_the_hook_or_not_available(start_server: StartServer, open_raw: OpenRaw) -> None:
    async def rpc(event: RpcEvent) -> Any:
        if event.method == "sum":
            return {"sum": sum(event.data)}
        if event.method == "bad":
            return object()  # not JSON: a failed hook
        raise Refuse(104, f"no method {event.method}")

    server = await start_server(hooks=Hooks(rpc=rpc))
    client = await open_raw(server)
    assert await client.ok("rpc", {"method": "sum", "data": [1, 2, 3]}) == {"data": {"sum": 6}}
    assert (await client.call("rpc", {"method": "nope"}))["error"]["code"] == 104
    assert (await client.call("rpc", {"method": "bad"}))["error"]["code"] == 114
    assert (await client.call("rpc", {"method": ""}))["error"]["code"] == 107
    plain = await start_server()
    other = await open_raw(plain)
    assert (await other.call("rpc", {"method": "sum"}))["error"]["code"] == 108


async def test_disconnect_and_unsubscribe_notifications_arrive_at_least_once(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    failures = {"left": 1}

    async def disconnect(event: DisconnectEvent) -> None:
        if failures["left"]:  # the app is down for the first try: the server retries
            failures["left"] -= 1
            raise ConnectionError("app restarting")
        await events.put(event)

    async def unsubscribe(event: UnsubscribeEvent) -> None:
        await events.put(event)

    server = await start_server(hooks=Hooks(disconnect=disconnect, unsubscribe=unsubscribe))
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "chat:a"})
    await client.ok("subscribe", {"channel": "chat:b"})
    await client.ok("unsubscribe", {"channel": "chat:a"})
    first = await asyncio.wait_for(events.get(), 5)
    assert isinstance(first, UnsubscribeEvent) and (first.channel, first.reason) == ("chat:a", "client")
    await client.ws.close(code=4000, message=b"bye")
    got = [await asyncio.wait_for(events.get(), 5) for _ in range(2)]
    leave = next(e for e in got if isinstance(e, UnsubscribeEvent))
    gone = next(e for e in got if isinstance(e, DisconnectEvent))
    assert (leave.channel, leave.reason) == ("chat:b", "disconnect")
    assert (gone.code, gone.reason, gone.client) == (4000, "bye", first.client)
    assert server.hub is not None and server.hub.stats.hook_errors[("disconnect", "error")] == 1


async def test_refresh_hook_extends_a_hook_authenticated_connection(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    refreshed = asyncio.Event()

    async def connect(event: ConnectEvent) -> ConnectDecision:
        return ConnectDecision(user="alice", expires_at=time.time() + 1.0)

    async def refresh(event: RefreshEvent) -> RefreshDecision:
        refreshed.set()
        return RefreshDecision(expires_at=time.time() + 3600)

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect, refresh=refresh))
    client = await open_raw(server, connect=False)
    assert (await client.ok("connect", {}))["expires"] is True
    await asyncio.wait_for(refreshed.wait(), 5)
    await client.ok("ping")  # the refresh's answer is applied by now
    assert server.hub is not None
    (session,) = server.hub.sessions.values()
    assert session.user == "alice" and (session.credentials.expires_at or 0) > time.time() + 3000  # type: ignore[attr-defined]


async def test_without_a_refresh_hook_the_connection_expires_with_3005(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    async def connect(event: ConnectEvent) -> ConnectDecision:
        return ConnectDecision(user="alice", expires_at=time.time() + 0.5)

    server = await start_server(token_secret=SECRET, hooks=Hooks(connect=connect))
    client = await open_raw(server, connect=False)
    await client.ok("connect", {})
    assert await client.close_code() == 3005


async def test_hook_calls_and_failures_are_in_the_metrics(start_server: StartServer, open_raw: OpenRaw) -> None:
    import aiohttp

    async def rpc(event: RpcEvent) -> Any:
        if event.method == "fail":
            raise RuntimeError("boom")
        return 1

    server = await start_server(hooks=Hooks(rpc=rpc))
    client = await open_raw(server)
    await client.ok("rpc", {"method": "ok"})
    await client.call("rpc", {"method": "fail"})
    async with aiohttp.ClientSession() as http, http.get(f"{server.api_url}/metrics") as response:
        text = await response.text()
    assert 'hubbub_hook_errors_total{hook="rpc",kind="error"} 1.0' in text
    assert 'hubbub_hook_duration_seconds_count{hook="rpc"} 2.0' in text


async def test_pending_notifications_are_bounded(start_server: StartServer, open_raw: OpenRaw) -> None:
    """An app that does not answer while many connections close: at most hook_notify_max_pending
    notifications wait; the rest are dropped and counted, never an unbounded pile of tasks."""
    release = asyncio.Event()
    taken: list[DisconnectEvent] = []

    async def disconnect(event: DisconnectEvent) -> None:
        await release.wait()
        taken.append(event)

    server = await start_server(hooks=Hooks(disconnect=disconnect), hook_notify_max_pending=2, hook_timeout=30)
    for _ in range(5):
        await open_raw(server)
    assert server.hub is not None
    # The server closes all five (anonymous) connections; with the memory broker that happens, and
    # each disconnect notification is started or dropped, before this call returns.
    assert await server.disconnect("") == 5
    assert server.hub.stats.hook_errors[("disconnect", "overflow")] == 3
    release.set()
    await server.hub.wait_spawned()
    assert len(taken) == 2
