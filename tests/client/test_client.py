"""hubbub.Client against a real server: API, reconnect, resubscribe and recovery."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import aiohttp
import pytest
from msgspec import Raw

from hubbub import Client, ClientPublication, NamespaceOptions, ReplyError
from hubbub.core.auth import mint_token
from hubbub.errors import ClientError, DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import StartServer
from tests.helpers import SECRET
from tests.wire import BareWebSocket, client_frame

ENCODINGS = pytest.mark.parametrize("encoding", ["json", "msgpack"])


@ENCODINGS
async def test_subscribe_iterate_publish_history_presence(server: Server, encoding: str) -> None:
    async with Client(server.url, encoding=encoding) as client:
        subscription = await client.subscribe("chat:room")
        result = await client.publish("chat:room", {"text": "hi"})
        assert result["offset"] == 1
        publication = await asyncio.wait_for(anext(subscription), 5)
        assert publication.data == {"text": "hi"} and publication.offset == 1
        history = await client.history("chat:room", limit=10)
        assert [p["data"] for p in history["publications"]] == [{"text": "hi"}]
        presence = await client.presence("chat:room")
        assert list(presence["clients"]) == [client.client_id]


@pytest.mark.parametrize(
    ("bob_encoding", "alice_encoding"), [("json", "json"), ("msgpack", "json"), ("json", "msgpack")]
)
async def test_callbacks_receive_publications_and_messages(
    start_server: StartServer, bob_encoding: str, alice_encoding: str
) -> None:
    """Publications and messages cross between JSON and MessagePack clients unchanged."""
    server = await start_server(token_secret=SECRET)
    received: asyncio.Queue[ClientPublication] = asyncio.Queue()
    messages: asyncio.Queue[object] = asyncio.Queue()
    bob_token, alice_token = mint_token(SECRET, "bob"), mint_token(SECRET, "alice")
    async with (
        Client(server.url, token=bob_token, on_message=messages.put_nowait, encoding=bob_encoding) as bob,
        Client(server.url, token=alice_token, encoding=alice_encoding) as alice,
    ):
        await bob.subscribe("news", received.put_nowait)
        await alice.publish("news", [1, 2])
        publication = await asyncio.wait_for(received.get(), 5)
        assert publication.data == [1, 2] and publication.info is not None and publication.info["user"] == "alice"
        await alice.send("bob", {"ding": True})
        assert await asyncio.wait_for(messages.get(), 5) == {"ding": True}


@ENCODINGS
async def test_error_replies_raise_reply_error(server: Server, encoding: str) -> None:
    async with Client(server.url, encoding=encoding) as client:
        with pytest.raises(ReplyError) as caught:
            await client.subscribe("nowhere:x")
        assert caught.value.code == ErrorCode.UNKNOWN_CHANNEL and not caught.value.temporary
        await client.subscribe("nowhere-else")  # the connection is still fine


async def test_refused_token_raises_and_does_not_retry(start_server: StartServer) -> None:
    server = await start_server(token_secret=SECRET)
    client = Client(server.url, token="not-a-token")
    with pytest.raises(ReplyError) as caught:
        await client.connect()
    assert caught.value.code == ErrorCode.UNAUTHORIZED
    assert client.state == "failed"
    await client.close()


@ENCODINGS
async def test_recovers_every_publication_after_its_socket_is_cut(server: Server, encoding: str) -> None:
    """The socket dies mid-stream; after reconnecting each publication arrives once, in order."""
    hub = server.hub
    assert hub is not None
    total = 300
    async with Client(server.url, min_reconnect_delay=0.01, max_reconnect_delay=0.1, encoding=encoding) as client:
        subscription = await client.subscribe("news")
        seen: list[int] = []

        async def publish_all() -> None:
            for i in range(1, total + 1):
                await hub.publish("news", Raw(b"%d" % i))
                await asyncio.sleep(0)  # a yield, so the feed interleaves with delivery and reconnects
                if i in (50, 150):  # cut while publications flow, once the client is (re)connected
                    await client.connect()
                    assert client._ws is not None and client._ws.transport is not None
                    client._ws.transport.abort()

        publisher = asyncio.create_task(publish_all())
        async with asyncio.timeout(20):
            async for publication in subscription:
                seen.append(publication.data)
                if publication.data == total:
                    break
        await publisher
        assert seen == list(range(1, total + 1))
        assert subscription.recovered is True


async def test_recovers_across_a_server_restart(start_server: StartServer, tmp_path: object) -> None:
    """Publications made while the server was down are replayed once it is back (SQLite history)."""
    first = await start_server(history_path=str(tmp_path) + "/restart.db")  # type: ignore[operator]
    port, api_port = first.port, first.api_port
    async with Client(first.url, min_reconnect_delay=0.01, max_reconnect_delay=0.2) as client:
        subscription = await client.subscribe("news")
        await client.publish("news", "before")
        assert (await asyncio.wait_for(anext(subscription), 5)).data == "before"
        await first.close()
        second = await start_server(history_path=str(tmp_path) + "/restart.db", port=port, api_port=api_port)  # type: ignore[operator]
        assert second.hub is not None
        await second.hub.publish("news", Raw(b'"while away"'))
        assert (await asyncio.wait_for(anext(subscription), 10)).data == "while away"
        await client.publish("news", "after")
        assert (await asyncio.wait_for(anext(subscription), 5)).data == "after"
        assert subscription.recovered is True


async def test_unrecoverable_gap_is_reported(start_server: StartServer) -> None:
    """When history no longer holds the gap, on_unrecovered runs and the stream continues."""
    server = await start_server(history_path=None)  # memory history: publish never yields below
    hub = server.hub
    assert hub is not None
    unrecovered: asyncio.Queue[str] = asyncio.Queue()
    async with Client(server.url, min_reconnect_delay=0.01) as client:
        subscription = await client.subscribe("chat:r", on_unrecovered=lambda s: unrecovered.put_nowait(s.channel))
        assert client._ws is not None
        await client._ws.close()
        for i in range(10):  # chat history keeps 5; no await yields, so these land before the reconnect
            await hub.publish("chat:r", Raw(b"%d" % i))
        assert await asyncio.wait_for(unrecovered.get(), 10) == "chat:r"
        assert subscription.recovered is False
        await hub.publish("chat:r", Raw(b'"next"'))
        async with asyncio.timeout(5):
            async for publication in subscription:
                if publication.data == "next":
                    break


async def test_terminal_close_code_stops_reconnecting(start_server: StartServer) -> None:
    server = await start_server(token_secret=SECRET)
    assert server.hub is not None
    client = Client(server.url, token=mint_token(SECRET, "bob"), min_reconnect_delay=0.01)
    await client.connect()
    await server.hub.disconnect_user("bob", DisconnectCode.FORCE_DISCONNECT)
    assert client._runner is not None
    await asyncio.wait_for(asyncio.shield(client._runner), 5)
    assert client.state == "failed" and client.last_close_code == DisconnectCode.FORCE_DISCONNECT
    with pytest.raises(ClientError):
        await client.publish("news", 1)
    await client.close()


async def test_reconnect_code_reconnects(start_server: StartServer) -> None:
    server = await start_server(token_secret=SECRET)
    assert server.hub is not None
    async with Client(server.url, token=mint_token(SECRET, "bob"), min_reconnect_delay=0.01) as client:
        first_id = client.client_id
        await server.hub.disconnect_user("bob", DisconnectCode.FORCE_RECONNECT)
        async with asyncio.timeout(5):
            while True:  # each ping waits for the reconnected session
                try:
                    await client.ping()
                except ClientError:
                    continue
                if client.client_id != first_id:
                    break
        assert client.last_close_code == DisconnectCode.FORCE_RECONNECT


def test_backoff_is_exponential_with_full_jitter() -> None:
    random.seed(7)
    client = Client("ws://127.0.0.1:1/connection/websocket", min_reconnect_delay=0.5, max_reconnect_delay=8)
    for attempt in range(12):
        ceiling = min(8, 0.5 * 2**attempt)
        delays = [client.reconnect_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread over the range
    assert client.reconnect_delay(10_000) <= 8


async def test_a_failing_callback_does_not_break_the_connection(server: Server) -> None:
    calls: list[object] = []

    def explode(publication: ClientPublication) -> None:
        calls.append(publication.data)
        raise RuntimeError("application bug")

    async with Client(server.url) as client:
        await client.subscribe("news", explode)
        plain = await client.subscribe("other")
        await client.publish("news", 1)
        await client.publish("other", 2)
        assert (await asyncio.wait_for(anext(plain), 5)).data == 2
        assert calls == [1] and client.state == "connected"


async def test_connection_lost_during_a_command_fails_it_at_once(server: Server) -> None:
    """A reply that can no longer come raises ConnectionLost now, not after command_timeout."""
    from hubbub.errors import ConnectionLost

    async with Client(server.url, command_timeout=30, min_reconnect_delay=0.01) as client:
        assert server.hub is not None
        original_top = server.hub.history_store.top

        async def top_and_cut(channel: str) -> object:
            assert client._ws is not None and client._ws.transport is not None
            client._ws.transport.abort()
            return await original_top(channel)

        server.hub.history_store.top = top_and_cut  # type: ignore[method-assign, assignment]
        async with asyncio.timeout(5):
            with pytest.raises(ConnectionLost):
                await client.subscribe("news")


async def test_conflated_channels_start_with_the_snapshot(start_server: StartServer) -> None:
    """The latest value carried by the subscribe reply reaches the subscriber first."""
    from hubbub.config import NamespaceOptions

    server = await start_server(namespaces={"ticker": NamespaceOptions(history_size=1, conflate=True)})
    assert server.hub is not None
    for price in (1, 2, 3):
        await server.hub.publish("ticker:ABC", Raw(b"%d" % price))
    async with Client(server.url) as client:
        subscription = await client.subscribe("ticker:ABC")
        assert (await asyncio.wait_for(anext(subscription), 5)).data == 3
        await server.hub.publish("ticker:ABC", Raw(b"4"))
        assert (await asyncio.wait_for(anext(subscription), 5)).data == 4


# Legal inside JSON strings (the first three) or as JSON whitespace (a lone CR), and line breaks
# to str.splitlines(): a client that splits frames with it drops or chokes on these messages.
LINE_BREAKS_THAT_ARE_NOT_NEWLINES = ["\u2028", "\u2029", "\u0085", "\r"]


@pytest.mark.parametrize("character", LINE_BREAKS_THAT_ARE_NOT_NEWLINES, ids=lambda c: f"U+{ord(c):04X}")
@ENCODINGS
async def test_data_with_unicode_line_breaks_arrives_live_and_through_recovery(
    start_server: StartServer, http: aiohttp.ClientSession, character: str, encoding: str
) -> None:
    """Such characters, unescaped, in data from the server API and from a client: live, in history,
    and replayed after a reconnect; the client never stalls on them."""
    server = await start_server(token_secret=SECRET)
    assert server.hub is not None
    if character == "\r":
        raw_data = b'{"t":\r"a"}'  # CR as whitespace: the only place raw JSON may hold one
        expected: object = {"t": "a"}
    else:
        raw_data = ('{"t": "a' + character + 'b"}').encode()
        expected = {"t": f"a{character}b"}
    token = mint_token(SECRET, "alice")
    async with Client(
        server.url, token=token, min_reconnect_delay=0.01, max_reconnect_delay=0.05, encoding=encoding
    ) as client:
        subscription = await client.subscribe("news")
        # Live, from the server API (published bytes as sent) and from a client.
        body = b'{"channel": "news", "data": ' + raw_data + b"}"
        async with http.post(f"{server.api_url}/api/publish", data=body) as response:
            assert response.status == 200, await response.text()
        await client.publish("news", {"t": f"c{character}d"})
        raw = await BareWebSocket.open(server.url)  # a client that sends the bytes unescaped
        await raw.send_bytes(client_frame(b'{"id":1,"connect":{"token":"%s"}}' % token.encode()))
        await raw.send_bytes(client_frame(b'{"id":2,"publish":{"channel":"news","data":' + raw_data + b"}}"))
        replies: list[dict[str, object]] = []
        while not any(reply.get("id") == 2 for reply in replies):
            replies += await asyncio.wait_for(raw.read_messages(), 5)
        assert replies[-1] == {"id": 2, "publish": {"offset": 3, "epoch": ANY}}
        raw.close()
        received = [(await asyncio.wait_for(anext(subscription), 5)).data for _ in range(3)]
        assert received == [expected, {"t": f"c{character}d"}, expected]
        # Through recovery: the server cuts the client, and publishes while it is away.
        first_id = client.client_id
        async with http.post(f"{server.api_url}/api/disconnect", json={"user": "alice", "reconnect": True}) as response:
            assert response.status == 200, await response.text()
        async with http.post(f"{server.api_url}/api/publish", data=body) as response:
            assert response.status == 200
        assert (await asyncio.wait_for(anext(subscription), 10)).data == expected
        assert client.client_id != first_id and subscription.recovered is True
        history = await client.history("news", limit=10)
        assert [p["data"] for p in history["publications"]] == [expected, {"t": f"c{character}d"}, expected, expected]


async def test_expired_token_at_connect_asks_the_token_function_again(start_server: StartServer) -> None:
    """Error 109 then close 3005: with a token function the client reconnects with a fresh token."""
    server = await start_server(token_secret=SECRET)
    tokens = iter([mint_token(SECRET, "alice", ttl=-5), mint_token(SECRET, "alice")])
    async with Client(server.url, token=lambda: next(tokens), min_reconnect_delay=0.01) as client:
        assert client.client_id is not None and client.last_close_code == DisconnectCode.TOKEN_EXPIRED


async def test_invalid_token_at_connect_fails_for_good(start_server: StartServer) -> None:
    """Error 101 then close 3500: no retry, whatever the token source."""
    server = await start_server(token_secret=SECRET)
    calls = 0

    def token() -> str:
        nonlocal calls
        calls += 1
        return "not-a-jwt"

    client = Client(server.url, token=token, min_reconnect_delay=0.01)
    with pytest.raises(ReplyError) as refused:
        await client.connect()
    assert refused.value.code == ErrorCode.UNAUTHORIZED and calls == 1
    await client.close()


VIP_NAMESPACES = {"vip": NamespaceOptions(subscribe="token", history_size=10, history_ttl=60, publish="anyone")}


async def test_subscription_token_function_keeps_the_subscription_past_each_tokens_expiry(
    start_server: StartServer,
) -> None:
    """Tokens living 2 s: the server asks ahead of each exp, the client answers with a fresh one."""
    server = await start_server(token_secret=SECRET, namespaces=VIP_NAMESPACES, refresh_before=1)
    assert server.hub is not None
    minted: list[str] = []

    def subscription_token() -> str:
        minted.append(mint_token(SECRET, "alice", ttl=2, channel="vip:gala"))
        return minted[-1]

    async with Client(server.url, token=mint_token(SECRET, "alice")) as client:
        subscription = await client.subscribe("vip:gala", token=subscription_token)
        async with asyncio.timeout(10):
            while len(minted) < 4:  # subscribe, then one sub_refresh per second: past two exps
                await server.hub.publish("vip:gala", Raw(b"%d" % len(minted)))
                await anext(subscription)
        assert subscription.active and subscription.unsubscribed is None
        assert "vip:gala" in server.hub.channels_of(next(iter(server.hub.sessions.values())))


async def test_a_fixed_subscription_token_ends_the_subscription_at_its_expiry(start_server: StartServer) -> None:
    """No token function: at exp the iteration ends and `unsubscribed` says why; the connection stays."""
    server = await start_server(token_secret=SECRET, namespaces=VIP_NAMESPACES, refresh_before=1)
    async with Client(server.url, token=mint_token(SECRET, "alice")) as client:
        subscription = await client.subscribe("vip:gala", token=mint_token(SECRET, "alice", ttl=2, channel="vip:gala"))
        async with asyncio.timeout(5):
            async for _ in subscription:
                pass  # ends when the server unsubscribes it
        assert subscription.unsubscribed == {"code": ErrorCode.TOKEN_EXPIRED, "reason": "subscription token expired"}
        await client.ping()  # still connected
        with pytest.raises(ReplyError) as refused:
            await client.subscribe("vip:gala")  # the grant is gone with the subscription
        assert refused.value.code == ErrorCode.PERMISSION_DENIED


async def test_publications_carry_the_servers_time_live_and_from_history(start_server: StartServer) -> None:
    """`time` (ms since the epoch) on live pushes, on history reads and on recovered publications."""
    import time

    server = await start_server()
    async with Client(server.url, min_reconnect_delay=0.01) as client:
        subscription = await client.subscribe("news")
        before = int(time.time() * 1000)
        await client.publish("news", {"n": 1})
        live = await asyncio.wait_for(anext(subscription), 5)
        after = int(time.time() * 1000)
        assert live.time is not None and before - 1 <= live.time <= after + 1
        [stored] = (await client.history("news"))["publications"]
        assert abs(stored["time"] - live.time) <= 1  # the store's clock, the same moment
        assert client._ws is not None and client._ws.transport is not None
        client._ws.transport.abort()  # away; then recovered
        assert server.hub is not None
        await server.hub.publish("news", Raw(b'{"n":2}'))
        recovered = await asyncio.wait_for(anext(subscription), 10)
        assert recovered.data == {"n": 2} and recovered.time is not None and recovered.time >= live.time


async def test_read_positions_are_kept_by_the_server_and_pushed_to_every_tab_and_member(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Unread counts derive from server-kept positions: a second tab, the other DM member and a
    restarted server all see the same; positions never move back."""
    from hubbub.config import Settings

    history = str(tmp_path / "read.db")
    settings = {"token_secret": SECRET, "namespaces": Settings().namespaces, "history_path": history}
    server = await start_server(**settings)
    assert server.hub is not None
    for n in range(5):
        await server.hub.publish("dm:alice,bob", Raw(b'{"text":"%d"}' % n))
    tab_reads: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    bob_reads: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    token = mint_token(SECRET, "alice")
    async with (
        Client(server.url, token=token) as tab1,
        Client(server.url, token=token, on_read=lambda c, r: tab_reads.put_nowait((c, r))) as tab2,
        Client(server.url, token=mint_token(SECRET, "bob"), on_read=lambda c, r: bob_reads.put_nowait((c, r))),
    ):
        state = (await tab2.read_positions(["dm:alice,bob"]))["dm:alice,bob"]
        assert state == {"read": 0, "offset": 5, "unread": 5, "seen": {"bob": 0}}
        assert await tab1.mark_read("dm:alice,bob", 3) == 3
        assert await asyncio.wait_for(tab_reads.get(), 5) == ("dm:alice,bob", {"user": "alice", "offset": 3})
        assert await asyncio.wait_for(bob_reads.get(), 5) == ("dm:alice,bob", {"user": "alice", "offset": 3})
        assert await tab2.mark_read("dm:alice,bob", 1) == 3  # an older report does not move it back
        assert await tab1.mark_read("dm:alice,bob", 99) == 5  # clamped to the newest offset
        assert (await tab2.read_positions(["dm:alice,bob"]))["dm:alice,bob"]["unread"] == 0
        with pytest.raises(ReplyError) as refused:
            await tab1.read_positions(["typing:lobby"])  # no history, no read state
        assert refused.value.code == ErrorCode.NOT_AVAILABLE
    await server.close()
    again = await start_server(**settings)
    async with Client(again.url, token=mint_token(SECRET, "bob")) as bob:
        state = (await bob.read_positions(["dm:alice,bob"]))["dm:alice,bob"]
        assert state == {"read": 0, "offset": 5, "unread": 5, "seen": {"alice": 5}}  # after a restart too
        with pytest.raises(ReplyError) as refused:
            await bob.read_positions(["dm:alice,carol"])  # not a member
        assert refused.value.code == ErrorCode.PERMISSION_DENIED
