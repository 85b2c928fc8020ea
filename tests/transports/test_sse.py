"""Server-Sent Events at /connection/sse: events, ids that resume, auth, limits, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from msgspec import Raw

from hubbub.config import NamespaceOptions
from hubbub.core.auth import mint_token
from hubbub.errors import DisconnectCode, ErrorCode
from hubbub.server import Server
from tests.conftest import StartServer
from tests.helpers import SECRET
from tests.streams import SseReader, raw_stream


def sse_url(server: Server, query: str) -> str:
    return f"http://127.0.0.1:{server.port}/connection/sse?{query}"


@contextlib.asynccontextmanager
async def sse(http: aiohttp.ClientSession, server: Server, query: str, **headers: str) -> AsyncIterator[SseReader]:
    async with http.get(sse_url(server, query), headers=headers) as response:
        assert response.status == 200, await response.text()
        yield SseReader(response)


async def publish(server: Server, channel: str, data: Any) -> None:
    assert server.hub is not None
    await server.hub.publish(channel, Raw(json.dumps(data, separators=(",", ":")).encode()))


async def test_events_carry_the_publications_and_ids_of_their_channels(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with sse(http, server, "channel=news&channel=chat:lobby") as reader:
        headers = reader.response.headers
        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["Cache-Control"].startswith("no-cache") and headers["X-Accel-Buffering"] == "no"
        news = await reader.next_of("subscribed")
        assert news.json["channel"] == "news" and news.json["offset"] == 0
        lobby = await reader.next_of("subscribed")
        assert lobby.json["channel"] == "chat:lobby"
        epoch = news.json["epoch"]
        assert reader.retry is not None and 1000 <= reader.retry <= 3000  # sse_retry 2 s, jittered
        await publish(server, "news", {"n": 1})
        await publish(server, "chat:lobby", {"n": 2})
        first = await reader.next_of("message")
        assert first.json == {"channel": "news", "data": {"n": 1}, "offset": 1, "time": first.json["time"]}
        assert first.id == f"news=1.{epoch}&chat%3Alobby=0.{lobby.json['epoch']}"
        second = await reader.next_of("message")
        assert (
            second.json["channel"] == "chat:lobby"
            and second.id == f"news=1.{epoch}&chat%3Alobby=1.{lobby.json['epoch']}"
        )


async def test_last_event_id_resumes_with_no_gap_and_no_duplicate(server: Server, http: aiohttp.ClientSession) -> None:
    async with sse(http, server, "channel=news") as reader:
        await reader.next_of("subscribed")
        for n in range(3):
            await publish(server, "news", n)
        assert [p["data"] for p in await reader.publications(3)] == [0, 1, 2]
        last_id = reader.last_event_id
    assert last_id is not None
    for n in range(3, 7):  # while the stream is away
        await publish(server, "news", n)
    async with sse(http, server, "channel=news", **{"Last-Event-ID": last_id}) as reader:
        subscribed = await reader.next_of("subscribed")
        assert subscribed.json["was_recovering"] is True and subscribed.json["recovered"] is True
        assert subscribed.id is not None and subscribed.id.startswith("news=3.")  # before what it replays (offsets 4-7)
        await publish(server, "news", 7)
        assert [p["data"] for p in await reader.publications(5)] == [3, 4, 5, 6, 7]


async def test_a_stream_cut_during_its_replay_resumes_where_the_replay_stood(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """Each replayed event moves the id: leaving after two of four replays asks for the other two."""
    async with sse(http, server, "channel=news") as reader:
        start = (await reader.next_of("subscribed")).id
    assert start is not None
    for n in range(4):
        await publish(server, "news", n)
    async with sse(http, server, "channel=news", **{"Last-Event-ID": start}) as reader:
        assert [p["data"] for p in await reader.publications(2)] == [0, 1]
        middle = reader.last_event_id
    assert middle is not None
    async with sse(http, server, "channel=news", **{"Last-Event-ID": middle}) as reader:
        assert [p["data"] for p in await reader.publications(2)] == [2, 3]


@pytest.mark.parametrize(
    "forged",
    [
        "news=1.NOTTHEEPOCH",  # another epoch
        "news=999.{epoch}",  # ahead of the stream
        "news=-1.{epoch}",  # malformed: counts as no position
        "news",
        "%zz=1.x",
        "news=1." + "e" * 65,
        "&".join(f"c{n}=1.e" for n in range(1100)),  # more fields than a Last-Event-ID may have
    ],
)
async def test_a_forged_last_event_id_never_replays_what_does_not_follow(
    server: Server, http: aiohttp.ClientSession, forged: str
) -> None:
    async with sse(http, server, "channel=news") as reader:
        epoch = (await reader.next_of("subscribed")).json["epoch"]
    await publish(server, "news", "old")
    forged = forged.replace("{epoch}", epoch)
    async with sse(http, server, "channel=news", **{"Last-Event-ID": forged}) as reader:
        first = await reader.next_event()
        assert first.event in ("subscribed", "unrecovered")
        if first.event == "unrecovered":  # it asked for a position that is not there: said so
            assert first.json["recovered"] is False
        await publish(server, "news", "new")
        assert [p["data"] for p in await reader.publications(1)] == ["new"]


async def test_last_event_id_in_the_query_for_clients_that_cannot_set_headers(
    server: Server, http: aiohttp.ClientSession
) -> None:
    async with sse(http, server, "channel=news") as reader:
        start = (await reader.next_of("subscribed")).id
    await publish(server, "news", "missed")
    async with sse(http, server, f"channel=news&last_event_id={start}") as reader:
        assert [p["data"] for p in await reader.publications(1)] == ["missed"]


async def test_tokens_in_the_query_or_the_authorization_header(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    namespaces = {"room": NamespaceOptions(history_size=10, history_ttl=60)}  # no anonymous clients
    server = await start_server(token_secret=SECRET, namespaces=namespaces)
    token = mint_token(SECRET, "alice")
    async with sse(http, server, f"channel=room:a&token={token}") as reader:
        assert (await reader.next_of("subscribed")).json["channel"] == "room:a"
    async with sse(http, server, "channel=room:a", Authorization=f"Bearer {token}") as reader:
        assert (await reader.next_of("subscribed")).json["channel"] == "room:a"
    async with http.get(sse_url(server, "channel=room:a")) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == ErrorCode.UNAUTHORIZED
    bad = mint_token("another-secret-of-at-least-32-bytes!", "eve")
    async with http.get(sse_url(server, f"channel=room:a&token={bad}")) as response:
        assert response.status == 401


async def test_the_same_permissions_as_websocket_clients(server: Server, http: aiohttp.ClientSession) -> None:
    async with http.get(sse_url(server, "channel=news&channel=nowhere:x")) as response:
        assert response.status == 404  # an unknown namespace: refused as a whole, and named
        body = await response.json()
        assert body["error"]["code"] == ErrorCode.UNKNOWN_CHANNEL and body["error"]["channel"] == "nowhere:x"


async def test_bad_requests_get_a_clear_answer(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(max_channels_per_connection=2)
    async with http.get(sse_url(server, "")) as response:
        assert response.status == 400 and (await response.json())["error"]["code"] == ErrorCode.BAD_REQUEST
    async with http.get(sse_url(server, "channel=a&channel=b&channel=c")) as response:
        assert response.status == 400 and (await response.json())["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    async with http.post(sse_url(server, "channel=a")) as response:
        assert response.status == 405 and response.headers["Allow"] == "GET"
        assert (await response.json())["error"]["code"] == ErrorCode.BAD_REQUEST
    async with http.get(sse_url(server, "channel=" + "x" * 300)) as response:
        assert response.status == 400  # longer than max_channel_name_bytes


async def test_rate_limits_apply_and_ask_the_browser_to_come_back_later(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(connect_rate_per_ip=0.001, connect_burst_per_ip=1)
    async with sse(http, server, "channel=news") as reader:
        await reader.next_of("subscribed")
    async with sse(http, server, "channel=news") as reader:  # 200, so EventSource retries later
        event = await reader.next_of("disconnect")
        assert event.json == {
            "code": DisconnectCode.TOO_MANY_REQUESTS,
            "reason": event.json["reason"],
            "reconnect": True,
        }
        assert reader.retry is not None and reader.retry >= 5000


async def test_an_origin_outside_the_allow_list_is_refused(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(allowed_origins="https://app.example")
    async with http.get(sse_url(server, "channel=news"), headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
        assert (await response.json())["error"] == {
            "code": ErrorCode.PERMISSION_DENIED,
            "message": "origin not allowed",
        }
    async with sse(http, server, "channel=news", Origin="https://app.example") as reader:
        assert reader.response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert reader.response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_keep_alive_comments_at_the_ping_interval(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(ping_interval=0.05)
    async with sse(http, server, "channel=news") as reader:
        await reader.next_of("subscribed")
        async with asyncio.timeout(5):
            while reader.comments < 3:
                line = await reader.response.content.readline()
                if line.startswith(b":"):
                    reader.comments += 1


async def test_drain_says_disconnect_1001_and_ends_the_stream(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    async with sse(http, server, "channel=news") as reader:
        await reader.next_of("subscribed")
        closing = asyncio.ensure_future(server.close())
        event = await reader.next_of("disconnect")
        assert event.json["code"] == DisconnectCode.GOING_AWAY and event.json["reconnect"] is True
        with pytest.raises(EOFError):
            await reader.next_event()
        await closing


async def test_server_disconnect_of_the_user_ends_its_stream(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(token_secret=SECRET)
    async with sse(http, server, f"channel=news&token={mint_token(SECRET, 'alice')}") as reader:
        await reader.next_of("subscribed")
        await server.disconnect("alice")
        event = await reader.next_of("disconnect")
        assert event.json["code"] == DisconnectCode.FORCE_DISCONNECT and event.json["reconnect"] is False
        with pytest.raises(EOFError):
            await reader.next_event()


async def test_direct_messages_and_join_leave_reach_the_stream(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(token_secret=SECRET)
    async with sse(http, server, f"channel=chat:room&token={mint_token(SECRET, 'alice')}") as reader:
        await reader.next_of("subscribed")
        await server.send("alice", {"hello": "alice"})
        assert (await reader.next_of("direct")).json["data"] == {"hello": "alice"}
        async with sse(http, server, f"channel=chat:room&token={mint_token(SECRET, 'bob')}") as other:
            await other.next_of("subscribed")
            joined = await reader.next_of("join")
            assert joined.json["channel"] == "chat:room" and joined.json["info"]["user"] == "bob"
        assert (await reader.next_of("leave")).json["info"]["user"] == "bob"


async def test_a_stream_that_stops_reading_is_cut_and_holds_bounded_memory(start_server: StartServer) -> None:
    """A reader that never reads: the outbox's byte bound cuts it (3008), as on WebSockets."""
    server = await start_server(max_outbox_bytes=64 * 1024, close_timeout=0.5)
    assert server.hub is not None and server._endpoint is not None and server._endpoint.server is not None
    assert server.port is not None
    never_reads, _ = await raw_stream(server.port, "/connection/sse?channel=news")
    try:
        before = server.hub.stats.slow_consumer_disconnects
        payload = Raw(b'"%s"' % (b"x" * 20000))
        for _ in range(1000):  # 20 MB offered: more than loopback's socket buffers and the bound
            await server.hub.publish("news", payload)
            await asyncio.sleep(0)  # a loop turn per publication, so each is flushed (a yield, not a wait)
            if server.hub.stats.slow_consumer_disconnects > before:
                break
        assert server.hub.stats.slow_consumer_disconnects == before + 1
        async with asyncio.timeout(5):
            await server._endpoint.server.wait_idle()  # dropped after close_timeout: nothing is held for it
    finally:
        never_reads.close()


async def test_many_idle_streams_are_served_and_released(start_server: StartServer) -> None:
    server = await start_server(connect_burst_per_ip=1000)
    assert server.hub is not None and server._endpoint is not None and server._endpoint.server is not None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readers = []
        responses = []
        for _ in range(200):
            response = await http.get(sse_url(server, "channel=news"))
            responses.append(response)
            readers.append(SseReader(response))
        for reader in readers:
            await reader.next_of("subscribed")
        assert server.hub.counts().connections == 200
        await publish(server, "news", "to all")
        for reader in readers:
            assert [p["data"] for p in await reader.publications(1)] == ["to all"]
        for response in responses:
            response.close()
    async with asyncio.timeout(5):
        await server._endpoint.server.wait_idle()
    assert server.hub.counts().connections == 0 and not server.hub.channels


async def test_curl_streams_events_as_they_happen(server: Server) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing: scripts/system-packages.sh installs it")
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sN", sse_url(server, "channel=news"), stdout=asyncio.subprocess.PIPE
    )
    assert curl.stdout is not None
    try:
        async with asyncio.timeout(10):
            while b"event: subscribed" not in await curl.stdout.readline():
                pass
            await publish(server, "news", {"via": "curl"})
            while True:
                line = await curl.stdout.readline()
                if line.startswith(b"data: ") and b'"via"' in line:
                    assert b'"data":{"via":"curl"}' in line
                    break
    finally:
        curl.terminate()  # the process this test started
        await curl.wait()


async def test_a_slow_reader_of_a_conflated_channel_gets_the_newest_value(start_server: StartServer) -> None:
    """conflate namespaces: a stream that falls behind gets the latest value, not a backlog or a cut."""
    server = await start_server()
    assert server.hub is not None
    assert server.port is not None
    slow, received = await raw_stream(server.port, "/connection/sse?channel=live:price")
    loop = asyncio.get_running_loop()
    try:
        pad = "x" * 16000
        for n in range(500):  # 8 MB while it does not read: more than loopback buffers and max_outbox_bytes
            await server.hub.publish("live:price", Raw(b'{"n":%d,"pad":"%s"}' % (n, pad.encode())))
            await asyncio.sleep(0)  # a loop turn per publication (a yield, not a wait)
        async with asyncio.timeout(10):
            while b'"n":499,' not in received or not received.endswith(b"\n\n"):
                chunk = await loop.sock_recv(slow, 65536)
                assert chunk, "the stream ended"
                received += chunk
        values = [json.loads(line[6:])["data"]["n"] for line in received.split(b"\n") if b'"pad"' in line]
        assert values[-1] == 499 and len(values) < 500 and values == sorted(values)
        assert server.hub.stats.slow_consumer_disconnects == 0
    finally:
        slow.close()


async def test_permission_denied_refuses_the_sse_stream_with_403(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    namespaces = {"room": NamespaceOptions(allow_anonymous=True, subscribe="authenticated")}
    server = await start_server(token_secret=SECRET, namespaces=namespaces)
    url = f"http://127.0.0.1:{server.port}/connection/sse?channel=room:a"
    async with http.get(url) as response:
        assert response.status == 403
        error = (await response.json())["error"]
        assert error["code"] == ErrorCode.PERMISSION_DENIED and error["channel"] == "room:a"
