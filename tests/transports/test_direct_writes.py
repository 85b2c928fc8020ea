"""The direct write (transports/sink.py): an idle subscriber's frames go to its socket's
descriptor when the transport holds nothing. Run on asyncio's loop and on uvloop, whose
transports buffer differently: order kept through partial writes and pauses, never raw bytes
under TLS, nothing after an abort."""

from __future__ import annotations

import ast
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import websockets.asyncio.client
from websockets.typing import Subprotocol

from hubbub import Client
from hubbub.protocol import Raw
from hubbub.server import Server
from hubbub.transports.sink import FD_UNKNOWN, WebSocketSink
from hubbub.transports.wsconnection import WebSocketConnection
from tests.conftest import StartServer
from tests.transports.test_internals import subscribed_to_news
from tests.wire import BareWebSocket

SOURCE = Path(__file__).parents[2] / "src" / "hubbub" / "transports"  # the source, also for a compiled build
BOTH_LOOPS = True  # tests/conftest.py: each test runs on asyncio's loop and on uvloop


async def subscriber_with_sink(server: Server) -> tuple[BareWebSocket, WebSocketConnection, WebSocketSink]:
    """A raw client subscribed to `news`, the server's side of it, and its session's sink."""
    socket_, connection = await subscribed_to_news(server)
    assert server.hub is not None
    [session] = server.hub.sessions.values()
    sink = session.outbox._sink
    assert isinstance(sink, WebSocketSink)
    return socket_, connection, sink


async def test_a_paused_transport_queues_the_next_publication_and_loses_none(start_server: StartServer) -> None:
    """A subscriber that stops reading: the direct write that fills its transport pauses it; the
    next publication finds the outbox idle but the transport paused, so it is queued (not
    written) and follows once the reader drains, every publication once and in order."""
    server = await start_server()
    socket_, connection = await subscribed_to_news(server)
    assert server.hub is not None
    loop = asyncio.get_running_loop()
    hub = server.hub

    async def publish_and_flush(n: int) -> None:
        await hub.publish("news", Raw(b'{"n":%d,"pad":"%s"}' % (n, b"x" * 16_000)))
        flushed = loop.create_future()
        loop.call_soon(flushed.set_result, None)  # after the flusher's callback, which came first
        await flushed

    published = 0
    while not connection.paused and published < 1000:  # the kernel's buffers fill first
        published += 1
        await publish_and_flush(published)
    assert connection.paused, "the transport never paused"
    published += 1
    await publish_and_flush(published)  # the outbox is idle, its transport paused: queued
    [session] = hub.sessions.values()
    assert session.outbox.queued_bytes > 16_000  # waiting in the outbox, not pushed into the transport
    received: list[int] = []
    while len(received) < published:
        for message in await asyncio.wait_for(socket_.read_messages(), 10):
            received.append(message["push"]["pub"]["data"]["n"])
    assert received == list(range(1, published + 1))
    socket_.close()


async def test_an_idle_subscriber_is_written_on_its_socket_until_the_connection_aborts(
    start_server: StartServer,
) -> None:
    """The direct write goes to the plain TCP socket's descriptor (transports/sink.py); an abort
    stops it at once, as after connection_lost the descriptor may be another connection's. The
    descriptor is looked up at the first direct write, not when the connection opens."""
    server = await start_server()
    socket_, connection, sink = await subscriber_with_sink(server)
    assert server.hub is not None and connection.transport is not None
    assert sink._fd == FD_UNKNOWN
    for n in range(3):
        await server.hub.publish("news", Raw(b'{"n":%d}' % n))
        [message] = await asyncio.wait_for(socket_.read_messages(), 5)
        assert message["push"]["pub"]["data"] == {"n": n}
        assert sink._fd == connection.transport.get_extra_info("socket").fileno()
    connection.abort()
    assert not connection.writes_frames
    assert sink.write_now(b'{"push":{"channel":"news","pub":{"data":"late"}}}') >= 0
    assert await asyncio.wait_for(socket_.reader.read(), 5) == b""  # the abort, nothing after it
    socket_.close()


async def test_a_closing_connection_gets_no_direct_write_after_its_close_frame(start_server: StartServer) -> None:
    """The sink's `accepting` mirrors the connection's `writes_frames` (so a direct write reads
    the sink alone): once the closing handshake has sent the close frame, no data frame may
    follow it (RFC 6455 section 5.5.1), though the TCP connection is still open."""
    server = await start_server()
    socket_, connection, sink = await subscriber_with_sink(server)
    assert server.hub is not None
    await server.hub.publish("news", Raw(b'{"n":1}'))  # a direct write: the descriptor is known
    [message] = await asyncio.wait_for(socket_.read_messages(), 5)
    assert message["push"]["pub"]["data"] == {"n": 1} and sink.accepting
    connection.close(1000, "bye")
    assert not sink.accepting and connection.transport is not None
    assert sink.write_now(b'{"push":{"channel":"news","pub":{"data":"late"}}}') == 0
    opcode, payload = await asyncio.wait_for(socket_.read_frame(), 5)
    assert opcode == 0x8 and payload[:2] == (1000).to_bytes(2, "big")
    await socket_.send_bytes(b"\x88\x80" + os.urandom(4))  # our close frame: the server closes TCP
    assert await asyncio.wait_for(socket_.reader.read(), 5) == b""  # no data frame after the close
    socket_.close()


async def test_a_direct_write_goes_behind_what_the_transport_still_holds(start_server: StartServer) -> None:
    """The transport holds the rest of a partial write; the kernel then makes room (the reader
    drains its socket); a direct write in that moment must queue behind the held bytes, not
    overtake them on the socket (checked before every direct write: the transport's buffer)."""
    server = await start_server()
    socket_, connection, sink = await subscriber_with_sink(server)
    assert server.hub is not None and connection.transport is not None
    await server.hub.publish("news", Raw(b'{"n":0}'))  # a complete direct write: buffer known empty
    [message] = await asyncio.wait_for(socket_.read_messages(), 5)
    assert message["push"]["pub"]["data"] == {"n": 0} and sink.transport_empty
    client_transport = socket_.writer.transport
    client_descriptor = socket_.writer.get_extra_info("socket").fileno()
    client_transport.pause_reading()  # type: ignore[attr-defined]  # the kernel's buffers fill
    sent = 0
    while connection.transport.get_write_buffer_size() == 0 and sent < 1000:
        sent += 1
        connection.send_message(json.dumps({"n": sent, "pad": "x" * 20_000}))
    held = connection.transport.get_write_buffer_size()
    assert 0 < held and not connection.paused, "the transport should hold part of a message, unpaused"
    stolen = bytearray()  # drain the client's socket now, with no loop turn for the server to write
    while True:
        try:
            chunk = os.read(client_descriptor, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        stolen += chunk
    assert sink.write_now(b'{"n":"direct"}') > held  # queued behind what the transport holds
    socket_.reader.feed_data(bytes(stolen))
    client_transport.resume_reading()  # type: ignore[attr-defined]
    received: list[object] = []
    while len(received) < sent + 1:
        received += [message["n"] for message in await asyncio.wait_for(socket_.read_messages(), 10)]
    assert received == [*range(1, sent + 1), "direct"]
    socket_.close()


def test_only_one_function_per_module_writes_to_the_transport() -> None:
    """A direct write trusts `transport_empty` until the next write through the transport, so
    every such write must go through the one function that clears it, in the connection and in
    the sink (anything else could leave bytes in the buffer that a direct write overtakes)."""
    for module in ("wsconnection", "sink"):
        tree = ast.parse((SOURCE / f"{module}.py").read_text())
        writers = set()
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef):
                for node in ast.walk(function):
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "write"
                        and ast.unparse(node.func.value).endswith("transport")
                    ):
                        writers.add(function.name)
        assert writers == {"_transport_write"}, (module, writers)


async def test_tls_fan_out_to_an_idle_subscriber_goes_through_tls(
    start_server: StartServer, tls: dict[str, Any]
) -> None:
    """An idle subscriber's publications take the direct write; over TLS that must be the TLS
    layer's write, never raw bytes on the socket under it (transports/sink.py). The subscriber is
    `websockets`' client: a broken TLS stream fails it (hubbub's client would reconnect and recover)."""
    server = await start_server(tls_cert=tls["cert"], tls_key=tls["key"])
    subprotocols = [Subprotocol("hubbub.json.v1")]
    async with (
        websockets.asyncio.client.connect(server.url, ssl=tls["client"], subprotocols=subprotocols) as subscriber,
        Client(server.url, ssl=tls["client"]) as publisher,
    ):
        await subscriber.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"news"}}')
        replies = 0
        while replies < 2:
            replies += len((await asyncio.wait_for(subscriber.recv(), 5)).splitlines())
        for n in range(3):
            await publisher.publish("news", f"over tls {n}")
            push = json.loads(await asyncio.wait_for(subscriber.recv(), 5))
            assert push["push"]["pub"]["data"] == f"over tls {n}"
