"""Hooks as HTTP: the server POSTs events to a real backend (an aiohttp app on a free port) and
acts on its answers; per-namespace URLs; an unreachable or broken backend is a 114, never a hang."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from hubbub.config import NamespaceOptions
from tests.conftest import OpenRaw, StartServer
from tests.helpers import NAMESPACES, SECRET
from tests.redis_server import free_port


class Backend:
    """The application's backend: records every hook call, answers per path."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.url = ""
        self.answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}  # a test's own, by path

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.calls.put((request.path, body))
        path = request.path
        if path in self.answers:
            return web.json_response(self.answers[path](body))
        if path == "/connect":
            if body["headers"].get("cookie") != "session=s1":
                return web.json_response({"error": {"code": 103, "message": "sign in first"}})
            return web.json_response({"result": {"user": "alice", "info": {"name": "Alice"}, "channels": ["feed:a"]}})
        if path == "/publish":
            return web.json_response({"result": {"data": {**body["data"], "checked": True}}})
        if path == "/rpc":
            return web.json_response({"result": {"data": {"echo": body["data"], "method": body["method"]}}})
        if path == "/broken":
            return web.Response(status=500, text="Internal Server Error")
        if path == "/garbage":
            return web.Response(text="<html>not json</html>")
        return web.json_response({"result": {}})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    backend = Backend()
    app = web.Application()
    app.router.add_post("/{hook}", backend.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    backend.url = f"http://127.0.0.1:{port}"
    yield backend
    await runner.cleanup()


async def test_connect_publish_rpc_and_notifications_through_http(
    start_server: StartServer, open_raw: OpenRaw, backend: Backend
) -> None:
    url = backend.url
    server = await start_server(
        token_secret=SECRET,
        connect_hook_url=f"{url}/connect",
        publish_hook_url=f"{url}/publish",
        rpc_hook_url=f"{url}/rpc",
        disconnect_hook_url=f"{url}/disconnect",
    )
    refused = await open_raw(server, connect=False)
    reply = await refused.call("connect", {})
    assert reply["error"]["code"] == 103 and reply["error"]["message"] == "sign in first"
    assert await refused.close_code() == 3505
    assert (await backend.calls.get())[0] == "/connect"

    client = await open_raw(server, connect=False, headers={"Cookie": "session=s1", "Authorization": "Bearer x"})
    result = await client.ok("connect", {"data": {"device": "phone"}})
    path, body = await backend.calls.get()
    assert body["headers"] == {"cookie": "session=s1", "authorization": "Bearer x"}
    assert body["data"] == {"device": "phone"} and body["client"] == result["client"]
    assert result["subs"] == ["feed:a"]  # server-side subscription from the hook's answer
    push = await client.next_message()
    assert push["push"]["channel"] == "feed:a" and "subscribe" in push["push"]

    await client.ok("subscribe", {"channel": "chat:room"})
    await client.ok("publish", {"channel": "chat:room", "data": {"text": "hi"}})
    path, body = await backend.calls.get()
    assert path == "/publish" and body["user"] == "alice" and body["info"] == {"name": "Alice"}
    assert (await client.next_publication())["data"] == {"text": "hi", "checked": True}

    assert await client.ok("rpc", {"method": "echo", "data": [1]}) == {"data": {"echo": [1], "method": "echo"}}
    await backend.calls.get()
    await client.ws.close()
    path, body = await asyncio.wait_for(backend.calls.get(), 5)
    assert path == "/disconnect" and body["user"] == "alice" and body["id"]


async def test_a_namespace_can_name_its_own_hook_or_none(
    start_server: StartServer, open_raw: OpenRaw, backend: Backend
) -> None:
    namespaces = {
        **NAMESPACES,
        "chat": NamespaceOptions(history_size=5, history_ttl=60, publish="anyone", publish_hook_url=""),
        "live": NamespaceOptions(publish="server", publish_hook_url=f"{backend.url}/publish"),
    }
    server = await start_server(namespaces=namespaces, publish_hook_url=f"{backend.url}/broken")
    client = await open_raw(server)
    await client.ok("publish", {"channel": "chat:room", "data": 1})  # no hook here: the rule (anyone)
    assert backend.calls.empty()
    await client.ok("publish", {"channel": "live:x", "data": {"v": 1}})  # the hook allows what the rule would not
    assert (await backend.calls.get())[0] == "/publish"
    broken = await client.call("publish", {"channel": "default-channel", "data": 1})  # the global URL: HTTP 500
    assert broken["error"]["code"] == 114 and broken["error"]["temporary"] is True


@pytest.mark.parametrize("where", ["garbage", "unreachable", "slow"])
async def test_a_broken_backend_gives_114_within_the_timeout(
    start_server: StartServer, open_raw: OpenRaw, backend: Backend, where: str
) -> None:
    hanging: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hanging.append(writer)  # reads nothing, answers nothing

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    url = {
        "garbage": f"{backend.url}/garbage",
        "unreachable": f"http://127.0.0.1:{free_port()}/rpc",
        "slow": f"http://127.0.0.1:{silent_port}/rpc",
    }[where]
    server = await start_server(rpc_hook_url=url, hook_timeout=0.3)
    client = await open_raw(server)
    reply = await client.call("rpc", {"method": "x"})
    assert reply["error"]["code"] == 114, reply
    await client.ok("ping")  # the connection carries on
    silent.close()
    for writer in hanging:
        writer.close()
    assert server.hub is not None
    assert sum(server.hub.stats.hook_errors.values()) == 1
    metrics = json.dumps(sorted(server.hub.stats.hook_errors))
    assert "rpc" in metrics


async def test_subscribe_refresh_and_unsubscribe_through_http(
    start_server: StartServer, open_raw: OpenRaw, backend: Backend
) -> None:
    import time

    def subscribe(body: dict[str, Any]) -> dict[str, Any]:
        if body["channel"] == "chat:no":
            return {"error": {"code": 1003, "message": "not yours", "temporary": True}}
        return {"result": {"info": {"role": body["data"]}}}

    backend.answers = {
        "/connect": lambda body: {"result": {"user": "ann", "expires_at": time.time() + 1}},
        "/refresh": lambda body: {"result": {"expires_at": time.time() + 3600, "info": {"v": 2}}},
        "/subscribe": subscribe,
    }
    url = backend.url
    server = await start_server(
        token_secret=SECRET,
        hook_forward_headers="X-Tenant",
        connect_hook_url=f"{url}/connect",
        refresh_hook_url=f"{url}/refresh",
        subscribe_hook_url=f"{url}/subscribe",
        unsubscribe_hook_url=f"{url}/unsubscribe",
    )
    client = await open_raw(server, connect=False, headers={"X-Tenant": "acme", "Cookie": "not forwarded"})
    await client.ok("connect", {})
    assert (await backend.calls.get())[1]["headers"] == {"x-tenant": "acme"}
    await client.ok("subscribe", {"channel": "chat:yes", "data": "admin"})
    assert (await backend.calls.get())[0] == "/subscribe"
    presence = await client.ok("presence", {"channel": "chat:yes"})
    assert next(iter(presence["clients"].values()))["chan_info"] == {"role": "admin"}
    refused = await client.call("subscribe", {"channel": "chat:no"})
    assert refused["error"] == {"code": 1003, "message": "not yours", "temporary": True}
    await backend.calls.get()
    path, body = await asyncio.wait_for(backend.calls.get(), 5)  # asked ahead of the 1 s expiry
    assert path == "/refresh" and body["user"] == "ann"
    await client.ok("unsubscribe", {"channel": "chat:yes"})
    path, body = await asyncio.wait_for(backend.calls.get(), 5)
    assert path == "/unsubscribe" and (body["channel"], body["reason"]) == ("chat:yes", "client")
    assert server.hub is not None
    (session,) = server.hub.sessions.values()
    assert bytes(session.info.info) == b'{"v":2}'  # type: ignore[attr-defined]


async def test_hook_concurrency_bounds_calls_in_flight(start_server: StartServer, open_raw: OpenRaw) -> None:
    """With hook_concurrency = 1 and a hook that holds its call, a second call waits for the slot
    and fails within hook_timeout (114), never running beside the first."""
    from hubbub import Hooks, RpcEvent

    inside = 0
    most = 0
    release = asyncio.Event()
    entered = asyncio.Event()

    async def rpc(event: RpcEvent) -> object:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        entered.set()
        await release.wait()
        inside -= 1
        return "done"

    server = await start_server(hooks=Hooks(rpc=rpc), hook_concurrency=1, hook_timeout=0.5)
    first, second = await open_raw(server), await open_raw(server)
    waiting = asyncio.ensure_future(first.call("rpc", {"method": "slow"}))
    await asyncio.wait_for(entered.wait(), 5)
    assert (await second.call("rpc", {"method": "slow"}))["error"]["code"] == 114
    assert (await waiting)["error"]["code"] == 114  # the first timed out too (it held past 0.5 s)
    release.set()
    assert most == 1
