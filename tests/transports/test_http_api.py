"""The server API on the internal port, over real HTTP."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest

from hubbub.errors import DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import OpenRaw, StartServer


async def call(
    http: aiohttp.ClientSession, server: Server, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, server.api_url + path, **kwargs) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_publish_returns_offset_and_epoch_and_reaches_subscribers(
    server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "news"})
    status, body = await call(http, server, "POST", "/api/publish", json={"channel": "news", "data": {"a": 1}})
    assert status == 200 and body["offset"] == 1 and isinstance(body["epoch"], str)
    assert (await client.next_publication())["data"] == {"a": 1}
    status, body = await call(http, server, "POST", "/api/publish", json={"channel": "feed:x", "data": 1})
    assert (status, body) == (200, {})  # no history: no offset


async def test_publish_returns_after_the_publication_is_in_history(server: Server, http: aiohttp.ClientSession) -> None:
    await call(http, server, "POST", "/api/publish", json={"channel": "news", "data": "x"})
    status, body = await call(http, server, "GET", "/api/history?channel=news")
    assert status == 200 and [p["data"] for p in body["publications"]] == ["x"]


async def test_broadcast_publishes_to_every_channel(
    server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "a"})
    await client.ok("subscribe", {"channel": "b"})
    status, body = await call(http, server, "POST", "/api/broadcast", json={"channels": ["a", "b"], "data": 7})
    assert status == 200 and [r["offset"] for r in body["results"]] == [1, 1]
    assert [(await client.next_publication())["data"] for _ in range(2)] == [7, 7]


async def test_broadcast_checks_every_channel_before_publishing(server: Server, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, server, "POST", "/api/broadcast", json={"channels": ["a", "nowhere:b"], "data": 1})
    assert status == 404 and body["error"]["code"] == ErrorCode.UNKNOWN_CHANNEL
    _, history = await call(http, server, "GET", "/api/history?channel=a")
    assert history["publications"] == []


async def test_history_since_limit_and_reverse(server: Server, http: aiohttp.ClientSession) -> None:
    for i in range(5):
        await call(http, server, "POST", "/api/publish", json={"channel": "news", "data": i})
    _, body = await call(http, server, "GET", "/api/history?channel=news&since=2&limit=2")
    assert [p["offset"] for p in body["publications"]] == [3, 4] and body["offset"] == 5
    _, body = await call(http, server, "GET", "/api/history?channel=news&reverse=true&limit=2")
    assert [p["offset"] for p in body["publications"]] == [5, 4]
    status, body = await call(http, server, "GET", f"/api/history?channel=news&since=1&epoch={'x' * 8}")
    assert status == 409 and body["error"]["code"] == ErrorCode.UNRECOVERABLE_POSITION


async def test_presence_and_channels(server: Server, open_raw: OpenRaw, http: aiohttp.ClientSession) -> None:
    client = await open_raw(server)
    await client.ok("subscribe", {"channel": "chat:room"})
    _, body = await call(http, server, "GET", "/api/presence?channel=chat:room")
    assert next(iter(body["clients"].values()))["user"] == ""
    _, body = await call(http, server, "GET", "/api/channels")
    assert body == {"channels": {"chat:room": {"subscribers": 1}}}
    _, info = await call(http, server, "GET", "/api/info")
    assert info["connections"] == 1 and info["channels"] == 1 and info["development_mode"] is True


async def test_send_reaches_the_users_connections(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    from hubbub.core.auth import mint_token
    from tests.helpers import SECRET

    server = await start_server(token_secret=SECRET)
    bob = await open_raw(server, connect=False)
    await bob.ok("connect", {"token": mint_token(SECRET, "bob")})
    status, _ = await call(http, server, "POST", "/api/send", json={"user": "bob", "data": {"ding": 1}})
    assert status == 200
    message = await bob.next_message()
    assert message == {"push": {"message": {"data": {"ding": 1}}}}


async def test_disconnect_closes_every_connection_of_the_user(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    from hubbub.core.auth import mint_token
    from tests.helpers import SECRET

    server = await start_server(token_secret=SECRET)
    clients = []
    for user in ("bob", "bob", "alice"):
        client = await open_raw(server, connect=False)
        await client.ok("connect", {"token": mint_token(SECRET, user)})
        clients.append(client)
    status, body = await call(http, server, "POST", "/api/disconnect", json={"user": "bob"})
    assert (status, body) == (200, {"connections": 2})
    for client in clients[:2]:
        assert await client.close_code() == DisconnectCode.FORCE_DISCONNECT
    assert await clients[2].ok("ping") == {}
    assert await call(http, server, "POST", "/api/disconnect", json={"user": "nobody"}) == (200, {"connections": 0})


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/api/publish", {"data": b"{not json"}, 400, ErrorCode.BAD_REQUEST),
        ("POST", "/api/publish", {"json": {"channel": "news"}}, 400, ErrorCode.BAD_REQUEST),
        ("POST", "/api/publish", {"json": {"channel": "news", "data": 1, "x": 2}}, 400, ErrorCode.BAD_REQUEST),
        ("POST", "/api/publish", {"json": {"channel": "nowhere:x", "data": 1}}, 404, ErrorCode.UNKNOWN_CHANNEL),
        ("POST", "/api/publish", {"json": {"channel": "bad name", "data": 1}}, 400, ErrorCode.BAD_REQUEST),
        ("POST", "/api/publish", {"data": io.BytesIO(b"[" + b"1," * 1_000_000 + b"1]")}, 413, ErrorCode.LIMIT_EXCEEDED),
        ("GET", "/api/history", {}, 400, ErrorCode.BAD_REQUEST),
        ("GET", "/api/history?channel=news&limit=x", {}, 400, ErrorCode.BAD_REQUEST),
        ("GET", "/api/history?channel=feed:x", {}, 404, ErrorCode.NOT_AVAILABLE),
        ("GET", "/api/presence?channel=feed:x", {}, 404, ErrorCode.NOT_AVAILABLE),
        ("GET", "/api/nothing", {}, 404, ErrorCode.METHOD_NOT_FOUND),
        ("GET", "/api/publish", {}, 405, ErrorCode.METHOD_NOT_FOUND),
    ],
)
async def test_bad_requests_get_json_errors(
    server: Server,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: int | None,
) -> None:
    got_status, body = await call(http, server, method, path, **kwargs)
    assert got_status == status
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def test_api_key_is_required_when_configured(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(api_key="k" * 40)
    body = {"channel": "news", "data": 1}
    status, reply = await call(http, server, "POST", "/api/publish", json=body)
    assert status == 401 and reply["error"]["code"] == ErrorCode.UNAUTHORIZED
    status, _ = await call(http, server, "POST", "/api/publish", json=body, headers={"Authorization": "apikey wrong"})
    assert status == 401
    headers = {"Authorization": "apikey " + "k" * 40}
    status, _ = await call(http, server, "POST", "/api/publish", json=body, headers=headers)
    assert status == 200
    status, _ = await call(http, server, "GET", "/health")  # health needs no key
    assert status == 200


async def test_without_api_key_only_loopback_is_answered(server: Server, http: aiohttp.ClientSession) -> None:
    """The loopback rule is what lets the default setup work; 127.0.0.2 is loopback too."""
    status, _ = await call(http, server, "GET", "/api/info")
    assert status == 200
    from hubbub.transports.access import is_loopback as _is_loopback

    assert _is_loopback("127.0.0.2") and _is_loopback("::1")
    assert not _is_loopback("10.0.0.1") and not _is_loopback(None) and not _is_loopback("garbage")
