"""Security over real sockets: TLS, tokens and refresh, permissions, Origin, limits, API keys."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import aiohttp
import pytest

from hubbub import Client, config
from hubbub.config import NamespaceOptions
from hubbub.core.auth import mint_token
from hubbub.errors import ConfigError, DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import OpenRaw, RawClient, StartServer
from tests.helpers import NAMESPACES, SECRET, schema_validator

SECURE_NAMESPACES = {
    **NAMESPACES,
    "public": NamespaceOptions(allow_anonymous=True, history_size=10, presence=True),
    "dm": NamespaceOptions(
        history_size=10,
        presence=True,
        subscribe="members",
        publish="members",
        read_history="members",
        read_presence="members",
    ),
    "vip": NamespaceOptions(subscribe="token", history_size=10),
    "user": NamespaceOptions(history_size=10, presence=True),
}


async def secure_server(start_server: StartServer, **overrides: Any) -> Server:
    return await start_server(token_secret=SECRET, namespaces=SECURE_NAMESPACES, **overrides)


async def as_user(open_raw: OpenRaw, server: Server, user: str, **kwargs: Any) -> RawClient:
    client = await open_raw(server, connect=False, **kwargs)
    await client.ok("connect", {"token": mint_token(SECRET, user)})
    return client


async def error_code(client: RawClient, method: str, params: dict[str, Any]) -> int:
    reply = await client.call(method, params)
    assert "error" in reply, reply
    return reply["error"]["code"]


# ---- TLS ----------------------------------------------------------------------------------------


async def test_tls_serves_wss_and_https_on_one_port(start_server: StartServer, tls: dict[str, Any]) -> None:
    """With tls_cert/tls_key the public port speaks wss:// and https://; clients verify the certificate."""
    server = await start_server(tls_cert=tls["cert"], tls_key=tls["key"])
    assert server.url.startswith("wss://")
    async with Client(server.url, ssl=tls["client"]) as client:
        subscription = await client.subscribe("news")
        await client.publish("news", "over tls")
        assert (await asyncio.wait_for(anext(subscription), 5)).data == "over tls"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{server.port}/health", ssl=tls["client"]) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # default trust store: unknown CA
            await http.get(f"https://127.0.0.1:{server.port}/health")


def test_tls_settings_go_together(tls: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="tls_cert"):
        config.load({"tls_cert": tls["cert"]})


# ---- who may connect ------------------------------------------------------------------------------


def test_non_loopback_host_without_a_token_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        config.load({"host": "0.0.0.0"})
    assert config.load({"host": "0.0.0.0", "insecure": "true"}).insecure
    assert config.load({"host": "0.0.0.0", "token_secret": SECRET}).host == "0.0.0.0"


async def test_anonymous_connections_only_where_a_namespace_allows_them(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    strict = await start_server(token_secret=SECRET)
    client = await open_raw(strict, connect=False)
    assert await error_code(client, "connect", {}) == ErrorCode.UNAUTHORIZED
    server = await secure_server(start_server)
    anonymous = await open_raw(server)  # connects: the `public` namespace admits anonymous clients
    assert await anonymous.ok("subscribe", {"channel": "public:lobby"}) is not None
    assert await error_code(anonymous, "subscribe", {"channel": "news"}) == ErrorCode.PERMISSION_DENIED
    assert await error_code(anonymous, "send", {"user": "bob", "data": 1}) == ErrorCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (mint_token("forged-secret-of-at-least-32-bytes-yes", "alice"), ErrorCode.UNAUTHORIZED),
        (mint_token(SECRET, "alice", ttl=-5), ErrorCode.TOKEN_EXPIRED),
        (mint_token(SECRET, "alice")[:-3] + "abc", ErrorCode.UNAUTHORIZED),
        (mint_token(SECRET, "alice", audience="billing"), ErrorCode.UNAUTHORIZED),
        (mint_token(SECRET, "alice", channel="news"), ErrorCode.UNAUTHORIZED),
    ],
    ids=["forged", "expired", "tampered", "wrong-audience", "subscription-token"],
)
async def test_bad_tokens_get_an_error_then_a_close_and_others_keep_receiving(
    start_server: StartServer, open_raw: OpenRaw, token: str, code: int
) -> None:
    server = await start_server(token_secret=SECRET, token_audience="chat")
    assert server.hub is not None
    good = await open_raw(server, connect=False)
    await good.ok("connect", {"token": mint_token(SECRET, "bob", audience="chat")})
    await good.ok("subscribe", {"channel": "news"})
    bad = await open_raw(server, connect=False)
    await server.hub.publish("news", __import__("msgspec").Raw(b"1"))
    assert await error_code(bad, "connect", {"token": token}) == code
    # Nothing else can happen on that connection: the server closes it at once, saying whether a
    # new token may help (3005: reconnect with one) or not (3500).
    expired = code == ErrorCode.TOKEN_EXPIRED
    assert await bad.close_code(timeout=5) == (
        DisconnectCode.TOKEN_EXPIRED if expired else DisconnectCode.INVALID_TOKEN
    )
    disconnect = next(m["push"]["disconnect"] for m in bad.pushes if "disconnect" in m.get("push", {}))
    assert disconnect["reconnect"] is expired
    await server.hub.publish("news", __import__("msgspec").Raw(b"2"))
    assert [(await good.next_publication())["data"] for _ in range(2)] == [1, 2]


# ---- channel permissions: refused, and nothing leaks ------------------------------------------------


async def test_members_channels_refuse_outsiders_and_leak_nothing(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await secure_server(start_server)
    alice = await as_user(open_raw, server, "alice")
    carol = await as_user(open_raw, server, "carol")
    await alice.ok("subscribe", {"channel": "dm:alice,bob"})
    await alice.ok("publish", {"channel": "dm:alice,bob", "data": "secret"})
    for method in ("subscribe", "history", "presence", "publish"):
        params: dict[str, Any] = {"channel": "dm:alice,bob"}
        if method == "publish":
            params["data"] = "intrusion"
        reply = await carol.call(method, params)
        assert reply["error"]["code"] == ErrorCode.PERMISSION_DENIED
        assert "secret" not in str(reply) and "alice" not in reply["error"]["message"]
    await alice.ok("publish", {"channel": "dm:alice,bob", "data": "second"})
    await alice.ok("ping")
    assert not [m for m in carol.buffer + carol.pushes if "push" in m]  # carol received nothing
    history = await alice.ok("history", {"channel": "dm:alice,bob"})
    assert [p["data"] for p in history["publications"]] == ["secret", "second"]


async def test_personal_channels_and_subscription_tokens(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await secure_server(start_server)
    alice = await as_user(open_raw, server, "alice")
    await alice.ok("subscribe", {"channel": "user:alice"})
    assert await error_code(alice, "subscribe", {"channel": "user:bob"}) == ErrorCode.PERMISSION_DENIED
    assert await error_code(alice, "history", {"channel": "user:bob"}) == ErrorCode.PERMISSION_DENIED
    assert await error_code(alice, "subscribe", {"channel": "vip:gala"}) == ErrorCode.PERMISSION_DENIED
    wrong = mint_token(SECRET, "alice", channel="vip:other")
    assert await error_code(alice, "subscribe", {"channel": "vip:gala", "token": wrong}) == ErrorCode.PERMISSION_DENIED
    bobs = mint_token(SECRET, "bob", channel="vip:gala")
    assert await error_code(alice, "subscribe", {"channel": "vip:gala", "token": bobs}) == ErrorCode.PERMISSION_DENIED
    params = {"channel": "vip:gala", "token": mint_token(SECRET, "alice", channel="vip:gala")}
    schema_validator("client_message").validate({"id": 99, "subscribe": params})
    await alice.ok("subscribe", params)


# ---- refresh ----------------------------------------------------------------------------------------


async def test_client_refreshes_when_the_server_asks_and_stays(start_server: StartServer) -> None:
    """The server pushes `refresh` refresh_before seconds ahead of exp; the client's callable answers."""
    server = await start_server(token_secret=SECRET, refresh_before=1.5)
    issued: list[float] = []
    past_first_expiry = asyncio.Event()

    def fresh_token() -> str:
        now = time.time()
        issued.append(now)
        if now - issued[0] > 2.5:  # the first token (exp at most 2 s after issue) has expired
            past_first_expiry.set()
        return mint_token(SECRET, "alice", ttl=2)

    async with Client(server.url, token=fresh_token) as client:
        first_id = client.client_id
        await asyncio.wait_for(past_first_expiry.wait(), 10)
        await client.ping()
        assert client.client_id == first_id and client.state == "connected"
        gaps = [later - earlier for earlier, later in itertools.pairwise(issued)]
        assert min(gaps) > 0.3, f"refreshes too close together: {gaps}"  # no refresh storm


async def test_connection_without_refresh_is_closed_at_exp(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(token_secret=SECRET, refresh_before=0.5)
    client = await open_raw(server, connect=False)
    result = await client.ok("connect", {"token": mint_token(SECRET, "alice", ttl=2)})
    assert result["expires"] is True
    refresh = await client.next_message(timeout=5)
    assert "refresh" in refresh["push"]
    schema_validator().validate(refresh)
    assert await client.close_code(timeout=5) == DisconnectCode.TOKEN_EXPIRED


# ---- Origin -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "origin", "ok"),
    [
        (None, None, True),  # not a browser
        (None, "same", True),
        (None, "http://evil.example", False),
        ("https://app.example,https://*.example.org", "https://app.example", True),
        ("https://app.example,https://*.example.org", "https://chat.example.org", True),
        ("https://app.example,https://*.example.org", "https://example.org.evil.com", False),
        ("https://app.example", "http://app.example", False),
        ("*", "http://anything.example", True),
    ],
)
async def test_origin_allow_list(
    start_server: StartServer, http: aiohttp.ClientSession, allowed: str | None, origin: str | None, ok: bool
) -> None:
    server = await start_server(allowed_origins=allowed)
    headers = {}
    if origin == "same":
        headers["Origin"] = f"http://127.0.0.1:{server.port}"
    elif origin is not None:
        headers["Origin"] = origin
    if ok:
        ws = await http.ws_connect(server.url, headers=headers)
        await ws.close()
    else:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(server.url, headers=headers)
        assert caught.value.status == 403


# ---- rate limits --------------------------------------------------------------------------------------


async def test_command_flood_gets_temporary_errors_then_a_close(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(command_rate=1, command_burst=5, max_refused_commands=10)
    assert server.hub is not None
    good = await open_raw(server)
    await good.ok("subscribe", {"channel": "news"})
    flooder = await open_raw(server)
    for command_id in range(100, 140):
        await flooder.send_raw(f'{{"id":{command_id},"ping":{{}}}}')
    codes = []
    async with asyncio.timeout(5):
        while True:
            try:
                message = await flooder.next_message()
            except ConnectionError:
                break
            if "error" in message:
                assert message["error"]["temporary"] is True
                codes.append(message["error"]["code"])
    assert codes and set(codes) == {ErrorCode.TOO_MANY_REQUESTS}
    assert flooder.ws.close_code == DisconnectCode.TOO_MANY_REQUESTS
    assert server.hub.limit_hits["commands"] >= 10
    await server.hub.publish("news", __import__("msgspec").Raw(b'"still here"'))
    assert (await good.next_publication())["data"] == "still here"


async def test_publish_rate_is_limited_separately(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(publish_rate=0.01, publish_burst=2)
    client = await open_raw(server)
    await client.ok("publish", {"channel": "news", "data": 1})
    await client.ok("publish", {"channel": "news", "data": 2})
    assert await error_code(client, "publish", {"channel": "news", "data": 3}) == ErrorCode.TOO_MANY_REQUESTS
    assert await client.ok("history", {"channel": "news"})  # other commands still flow


async def test_connection_attempts_and_open_connections_per_ip(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(connect_rate_per_ip=0.01, connect_burst_per_ip=3, max_connections_per_ip=2)
    first = await http.ws_connect(server.url)
    second = await http.ws_connect(server.url)
    with pytest.raises(aiohttp.WSServerHandshakeError) as too_many_open:
        await http.ws_connect(server.url)
    assert too_many_open.value.status == 429
    await first.close()
    await second.close()
    server2 = await start_server(connect_rate_per_ip=0.01, connect_burst_per_ip=3)
    for _ in range(3):
        await (await http.ws_connect(server2.url)).close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as too_fast:
        await http.ws_connect(server2.url)
    assert too_fast.value.status == 429


async def test_connections_per_user_are_limited(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = await start_server(token_secret=SECRET, max_connections_per_user=1)
    await as_user(open_raw, server, "alice")
    second = await open_raw(server, connect=False)
    assert await error_code(second, "connect", {"token": mint_token(SECRET, "alice")}) == ErrorCode.LIMIT_EXCEEDED
    assert await second.close_code() == DisconnectCode.CONNECTION_LIMIT
    await as_user(open_raw, server, "bob")


# ---- API keys -------------------------------------------------------------------------------------------


async def test_admin_actions_need_the_admin_key(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(api_key="a" * 40, admin_key="b" * 40)
    url = f"{server.api_url}/api/disconnect"
    async with http.post(url, json={"user": "x"}, headers={"Authorization": "apikey " + "a" * 40}) as response:
        assert response.status == 401
    async with http.post(url, json={"user": "x"}, headers={"Authorization": "apikey " + "b" * 40}) as response:
        assert response.status == 200
    publish = {"channel": "news", "data": 1}
    for key in ("a" * 40, "b" * 40):  # the admin key also works for ordinary calls
        async with http.post(
            f"{server.api_url}/api/publish", json=publish, headers={"Authorization": "apikey " + key}
        ) as response:
            assert response.status == 200


# ---- no secrets in logs ------------------------------------------------------------------------------------


async def test_no_secret_reaches_the_logs(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(token_secret=SECRET, api_key="k" * 40, log_level="debug")
    good_token = mint_token(SECRET, "alice")
    bad_token = mint_token("forged-secret-of-at-least-32-bytes-yes", "mallory")
    client = await open_raw(server, connect=False)
    await client.ok("connect", {"token": good_token})
    other = await open_raw(server, connect=False)
    await other.call("connect", {"token": bad_token})
    async with http.post(
        f"{server.api_url}/api/publish", json={"channel": "news", "data": 1}, headers={"Authorization": "apikey nope"}
    ):
        pass
    logging.getLogger("hubbub.test").info("settings: %r", server.settings)
    text = caplog.text
    assert "settings: Settings(" in text
    for secret in (SECRET, "k" * 40, good_token, bad_token, good_token.split(".")[2]):
        assert secret not in text


def test_redacting_filter_masks_tokens_and_configured_secrets() -> None:
    from hubbub.redaction import RedactingFilter

    token = mint_token(SECRET, "alice")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s key %s", (token, "k" * 40), None)
    RedactingFilter(["k" * 40]).filter(record)
    assert record.getMessage() == "token [redacted] key [redacted]"
