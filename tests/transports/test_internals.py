"""Where hubbub does by hand what `websockets.asyncio` did, for speed and memory: the raw frame fast
path (byte-identical to what `websockets` would send), the shared keepalive, no task per idle
connection, dropped handshakes, TCP Fast Open."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct

import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from hubbub.protocol import Raw
from hubbub.server import Server
from hubbub.transports.frames import FrameCache, control_frame, text_frame
from hubbub.transports.wsconnection import MAX_PENDING_PINGS, WebSocketConnection, WebSocketServer
from tests.conftest import OpenRaw, StartServer
from tests.wire import BareWebSocket, client_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_the_library_serialisation(length: int) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) equals websockets' own unmasked frame."""
    payload = b"a" * length
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


@pytest.mark.parametrize("length", [0, 4, 125])
@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG])
def test_control_frame_matches_the_library_serialisation(opcode: Opcode, length: int) -> None:
    payload = b"p" * length
    assert control_frame(opcode.value, payload) == Frame(opcode, payload).serialize(mask=False)


def test_frame_cache_frames_each_payload_object_once() -> None:
    """The same payload object gives the same frame object; another payload a new frame."""
    cache = FrameCache()
    payload = b"x" * 10
    frame = cache.frame_for(payload)
    assert cache.frame_for(payload) is frame
    other = cache.frame_for(b"y" * 10)
    assert other is not frame and other.endswith(b"y" * 10)


async def test_tcp_fast_open_is_set_on_the_public_port(start_server: StartServer) -> None:
    """The setting reaches the listening sockets (what the kernel does with it is its business)."""
    server = await start_server(tcp_fastopen=256)
    assert server._endpoint is not None and server._endpoint.server is not None
    for listening in server._endpoint.server.sockets:
        assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN) == 256
    plain = await start_server()
    assert plain._endpoint is not None and plain._endpoint.server is not None
    for listening in plain._endpoint.server.sockets:
        assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN) == 0


async def test_open_connections_do_not_keep_their_handshake(start_server: StartServer, open_raw: OpenRaw) -> None:
    """An idle connection drops its upgrade request's headers (kilobytes with cookies)."""
    server = await start_server()
    cookie = "session=" + "c" * 4000
    client = await open_raw(server, headers={"Cookie": cookie})
    await client.ok("subscribe", {"channel": "idle"})
    gc.collect()
    requests = [obj for obj in gc.get_objects() if isinstance(obj, Request)]
    assert not [request for request in requests if request.headers.get("Cookie") == cookie]
    assert await client.ok("ping") == {}  # and the connection still works


async def test_an_idle_connection_keeps_no_inbox(start_server: StartServer) -> None:
    """The inbox's deque (760 bytes empty, more than a sixth of an idle connection) goes once its
    messages are handled; the next message makes a new one."""
    server = await start_server()
    client, connection, _ = await connected_client(server)
    assert connection._inbox is None and connection._worker is None
    await client.send_json({"id": 2, "subscribe": {"channel": "news"}})
    await client.send_json({"id": 3, "ping": {}})
    assert [reply["id"] for reply in await client.read_replies(2)] == [2, 3]
    assert connection._inbox is None and connection._worker is None
    client.close()


async def test_one_timer_pings_every_connection_without_a_task_each(start_server: StartServer) -> None:
    """Pings arrive every ping_interval; an idle connection carries no task of its own."""
    server = await start_server(ping_interval=0.1, ping_timeout=5)
    tasks_before = len(asyncio.all_tasks())
    sockets = [await BareWebSocket.open(server.url) for _ in range(3)]
    for socket_ in sockets:
        for _ in range(2):  # two pings each, answered (read_messages answers, read_frame does not)
            opcode, payload = await asyncio.wait_for(socket_.read_frame(), 5)
            assert opcode == 0x9 and len(payload) == 4
            await socket_.send_bytes(client_frame(payload, opcode=0xA))
    assert server._endpoint is not None and server._endpoint.server is not None
    connections = server._endpoint.server.connections
    assert len(connections) == 3
    assert all(connection.state is State.OPEN for connection in connections)
    assert len(asyncio.all_tasks()) <= tasks_before
    for socket_ in sockets:
        socket_.close()


async def test_unanswered_pings_are_remembered_up_to_a_bound(start_server: StartServer) -> None:
    """Without ping_timeout a silent peer is never closed, so its unanswered pings must not pile up."""
    server = await start_server(ping_interval=0.02, ping_timeout=None)
    silent = await BareWebSocket.open(server.url)
    for _ in range(MAX_PENDING_PINGS + 5):  # read (never answer) more pings than the bound
        opcode, _ = await asyncio.wait_for(silent.read_frame(), 5)
        assert opcode == 0x9
    assert server._endpoint is not None and server._endpoint.server is not None
    (connection,) = server._endpoint.server.connections
    assert connection.pings is not None and len(connection.pings) == MAX_PENDING_PINGS
    silent.close()


async def test_a_client_that_never_answers_our_close_is_dropped_after_close_timeout(start_server: StartServer) -> None:
    server = await start_server(connect_timeout=0.1, close_timeout=0.5)
    mute = await BareWebSocket.open(server.url)
    assert await asyncio.wait_for(mute.close_code(), 5) == 3502  # the server's close (connect timeout)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(mute.reader.read(), 5) == b""  # we never answer: the server drops us
    assert 0.3 <= loop.time() - started < 3
    mute.close()


async def test_a_connection_walks_its_named_phases_and_leaves_the_registry_once(start_server: StartServer) -> None:
    """OPEN once upgraded, GONE once lost, and out of the registry either way, a connection lost
    mid-handshake too (the registry's emptiness is what shutdown waits for)."""
    from hubbub.transports.wsconnection import Phase

    server = await start_server()
    assert server._endpoint is not None and server._endpoint.server is not None
    listening = server._endpoint.server
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n")  # half a request head
    await writer.drain()
    writer.close()
    await asyncio.wait_for(listening.wait_idle(), 5)  # lost mid-handshake: straight to GONE
    socket_ = await BareWebSocket.open(server.url)
    [opened] = listening.connections
    assert opened.phase is Phase.OPEN
    socket_.writer.close()
    await asyncio.wait_for(listening.wait_idle(), 5)
    assert opened.phase is Phase.GONE and not listening.connections


async def subscribed_to_news(server: Server) -> tuple[BareWebSocket, WebSocketConnection]:
    """A raw client connected and subscribed to `news`, and the server's side of it."""
    socket_ = await BareWebSocket.open(server.url)
    await socket_.send_json({"id": 1, "connect": {}})
    await socket_.send_json({"id": 2, "subscribe": {"channel": "news"}})
    await socket_.read_replies(2)
    assert server._endpoint is not None and server._endpoint.server is not None
    [connection] = server._endpoint.server.connections
    return socket_, connection


async def test_a_fan_out_after_our_close_frame_writes_no_data_frame(start_server: StartServer) -> None:
    """Between the server's close frame and the end of the connection the session still follows
    its channels; a publication then must not go out after the close frame (RFC 6455 5.5.1)."""
    server = await start_server()
    socket_, connection = await subscribed_to_news(server)
    assert server.hub is not None
    connection.close(1001, "going away")
    server.hub.on_channel_message("news", None, b'{"push":{"channel":"news","pub":{"data":"late"}}}')
    opcode, payload = await asyncio.wait_for(socket_.read_frame(), 5)
    assert opcode == 0x8 and payload[:2] == b"\x03\xe9"
    await socket_.send_bytes(client_frame(payload[:2], opcode=0x8))
    assert await asyncio.wait_for(socket_.reader.read(), 5) == b""  # nothing after the close frame
    socket_.close()


async def test_every_session_of_a_server_shares_one_bound_call_later(start_server: StartServer) -> None:
    """A bound method per session would be 64 bytes more per connection (docs/benchmarks.md)."""
    server = await start_server()
    clients = [await BareWebSocket.open(server.url) for _ in range(2)]
    for client in clients:
        await client.send_json({"id": 1, "connect": {}})
        await asyncio.wait_for(client.read_messages(), 5)
    assert server._endpoint is not None and server._endpoint.server is not None
    sessions = [connection._handler.session for connection in server._endpoint.server.connections]  # type: ignore[union-attr]
    assert len(sessions) == 2 and sessions[0] is not sessions[1]
    assert sessions[0]._call_later is sessions[1]._call_later
    assert sessions[0]._call_later.__self__ is asyncio.get_running_loop()
    for client in clients:
        client.close()


async def test_a_connection_makes_websockets_protocol_only_when_it_first_needs_one(start_server: StartServer) -> None:
    """Commands, publications, our pings and theirs go without the sans-I/O protocol (1.4 KiB and
    9 GC-tracked objects a connection); a close frame makes it, and the close code comes through."""
    server = await start_server(ping_interval=0.1, ping_timeout=5)
    assert server.hub is not None and server._endpoint is not None and server._endpoint.server is not None
    client = await BareWebSocket.open(server.url)
    await client.send_json({"id": 1, "connect": {}})
    await client.send_json({"id": 2, "subscribe": {"channel": "news"}})
    assert [reply["id"] for reply in await client.read_replies(2)] == [1, 2]
    await server.hub.publish("news", Raw(b'"hello"'))
    (push,) = await client.read_messages()
    assert push["push"]["pub"]["data"] == "hello"
    opcode, payload = await asyncio.wait_for(client.read_frame(), 5)  # the keepalive's ping
    assert opcode == 0x9
    (connection,) = server._endpoint.server.connections
    assert connection.pings is not None and payload in connection.pings
    pong = connection.pings[payload]
    await client.send_bytes(client_frame(payload, opcode=0xA))
    await asyncio.wait_for(pong, 5)  # our pong settled it
    await client.send_bytes(client_frame(b"theirs", opcode=0x9))
    while (frame := await asyncio.wait_for(client.read_frame(), 5))[0] == 0x9:
        pass  # another keepalive ping meanwhile
    assert frame == (0xA, b"theirs")
    assert connection.protocol is None and connection.state is State.OPEN
    await client.send_bytes(client_frame(struct.pack("!H", 4000) + b"bye", opcode=0x8))
    assert await asyncio.wait_for(client.close_code(), 5) == 4000  # the close handshake, by websockets
    assert await asyncio.wait_for(client.reader.read(), 5) == b""  # then the server ends its side
    client.close()
    await asyncio.wait_for(server._endpoint.server.wait_idle(), 5)
    assert connection.protocol is not None and connection.close_code == 4000 and connection.close_reason == "bye"


async def connected_client(server: Server) -> tuple[BareWebSocket, WebSocketConnection, WebSocketServer]:
    """A client past its `connect`, the server's side of it (its only connection) and what
    serves them."""
    assert server._endpoint is not None and server._endpoint.server is not None
    client = await BareWebSocket.open(server.url)
    await client.send_json({"id": 1, "connect": {}})
    await client.read_messages()
    (connection,) = server._endpoint.server.connections
    return client, connection, server._endpoint.server


async def test_a_connection_without_a_protocol_reports_an_abrupt_end_as_1006(start_server: StartServer) -> None:
    server = await start_server()
    client, connection, serving = await connected_client(server)
    assert connection.close_code is None
    client.writer.transport.abort()  # no close frame: TCP just ends
    await asyncio.wait_for(serving.wait_idle(), 5)
    assert connection.state is State.CLOSED and connection.close_code == 1006 and connection.close_reason == ""


async def test_a_peer_eof_ends_a_connection_without_making_websockets_protocol(start_server: StartServer) -> None:
    """A client's FIN is how most connections end (a reconnect storm is mostly these): nothing
    needs the sans-I/O protocol then, so none is made (about 58k instructions a connection)."""
    server = await start_server()
    client, connection, serving = await connected_client(server)
    client.writer.write_eof()
    assert await asyncio.wait_for(client.reader.read(), 5) == b""  # the server ends its side, sending nothing
    await asyncio.wait_for(serving.wait_idle(), 5)
    assert connection.protocol is None
    assert connection.state is State.CLOSED and connection.close_code == 1006 and connection.close_reason == ""
    client.close()


async def test_a_protocol_made_after_the_peers_eof_is_closed_and_sends_nothing(start_server: StartServer) -> None:
    """Between the peer's EOF and the transport's end nothing may go out, whatever asks for the
    protocol then (a close from the session, say)."""
    server = await start_server()
    client, connection, _ = await connected_client(server)
    connection.eof_received()  # as the transport reports a FIN, before it closes
    assert connection.state is State.CLOSED and connection.close_code == 1006
    connection.close(1001, "going away")  # too late: nothing is written
    protocol = connection._open_protocol()
    assert protocol.state is State.CLOSED and protocol.close_code == 1006 and not protocol.data_to_send()
    connection.abort()
    assert await asyncio.wait_for(client.reader.read(), 5) == b""  # no close frame came before the end
    client.close()


async def test_a_connection_asks_asyncio_for_its_loop_at_no_step_of_its_life(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.get_running_loop()` is a `getpid` system call on Python 3.11: the connection and
    its endpoint use the loop they were made on. Counts the calls through the `asyncio` name that
    hubbub's code (compiled or not) looks up, over connect + subscribe + close; the first round
    reads the channel's history top, which is a thread's work, not the connection's."""
    server = await start_server()
    assert server._endpoint is not None and server._endpoint.server is not None
    real = asyncio.get_running_loop
    calls = 0

    def counted() -> asyncio.AbstractEventLoop:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    for round_ in range(6):
        if round_ == 1:
            calls = 0
        client = await BareWebSocket.open(server.url)
        await client.send_json({"id": 1, "connect": {}})
        await client.send_json({"id": 2, "subscribe": {"channel": "news"}})
        assert [reply["id"] for reply in await client.read_replies(2)] == [1, 2]
        client.writer.write_eof()
        assert await asyncio.wait_for(client.reader.read(), 5) == b""
        client.close()
        await asyncio.wait_for(server._endpoint.server.wait_idle(), 5)
    assert calls == 0
