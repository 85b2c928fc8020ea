"""Every code in docs/protocol.md's tables is sent where the docs say, with the documented flags.

The tables are read from the docs, so a code added there without a trigger here fails the first
test, and a trigger that no longer produces its code (or its `temporary`/`reconnect` flag) fails
the second. Each trigger drives a real server over a real socket with a raw client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from msgspec import Raw

from hubbub.core.auth import mint_token
from hubbub.errors import DisconnectCode, ErrorCode, Refuse, close_code_allows_reconnect
from hubbub.hooks import ConnectDecision, ConnectEvent, Hooks
from hubbub.server import Server
from tests.conftest import StartServer
from tests.helpers import SECRET
from tests.wire import BareWebSocket, client_frame

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def table_after(heading: str) -> list[list[str]]:
    """Rows (cells) of the first table under `## heading`."""
    section = PROTOCOL_DOC.read_text().split(f"\n## {heading}\n", 1)[1]
    rows = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


DOCUMENTED_ERRORS = {int(row[0]): row[2] == "yes" for row in table_after("Error codes")}  # code -> temporary
DOCUMENTED_CLOSES = {int(row[0]): row[2].startswith("yes") for row in table_after("Close codes")}  # -> reconnect


class Wire:
    """A raw client on one server: commands with ids, pushes kept, the close code read at the end."""

    def __init__(self, socket: BareWebSocket) -> None:
        self.socket = socket
        self.messages: list[dict[str, Any]] = []
        self.next_id = 0

    @classmethod
    async def open(cls, server: Server, token: str | None = None, *, connect: bool = True) -> Wire:
        wire = cls(await BareWebSocket.open(server.url))
        OPEN_WIRES.append(wire)
        if connect:
            reply = await wire.call("connect", {"token": token} if token else {})
            assert "error" not in reply, reply
        return wire

    async def send(self, method: str, params: dict[str, Any]) -> int:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, method: params})
        return self.next_id

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        command_id = await self.send(method, params)
        async with asyncio.timeout(5):
            while True:
                for message in self.messages:
                    if message.get("id") == command_id:
                        return message
                self.messages += await self.socket.read_messages()

    async def error(self, method: str, params: dict[str, Any]) -> tuple[int, bool]:
        reply = await self.call(method, params)
        assert "error" in reply, reply
        return reply["error"]["code"], reply["error"]["temporary"]

    async def answer_close(self, payload: bytes) -> None:
        """Echo the close frame (RFC 6455 section 5.5.1) and close TCP, so the server need not wait."""
        with contextlib.suppress(OSError):
            await self.socket.send_bytes(client_frame(payload[:2], opcode=0x8))
        self.socket.writer.close()

    async def close_code(self, timeout: float = 10) -> tuple[int | None, bool | None]:
        """(close code, the `reconnect` of the disconnect push before it, or None without one)."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.socket.read_frame()
                if opcode == 0x9:
                    await self.socket.send_bytes(client_frame(payload, opcode=0xA))
                elif opcode == 0x1:
                    self.messages += [json.loads(line) for line in payload.split(b"\n")]
                elif opcode == 0x8:
                    await self.answer_close(payload)
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    pushes = [m["push"]["disconnect"] for m in self.messages if "disconnect" in m.get("push", {})]
                    return code, (pushes[-1]["reconnect"] if pushes else None)


OPEN_WIRES: list[Wire] = []


@pytest.fixture(autouse=True)
async def close_wires(start_server: StartServer) -> AsyncIterator[None]:
    """Depends on start_server so it runs first at teardown: servers then close at once."""
    yield
    while OPEN_WIRES:
        writer = OPEN_WIRES.pop().socket.writer
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


Trigger = Callable[[StartServer], Awaitable[Any]]
ERROR_TRIGGERS: dict[int, Trigger] = {}
CLOSE_TRIGGERS: dict[int, Trigger] = {}


def error_trigger(code: int) -> Callable[[Trigger], Trigger]:
    def register(trigger: Trigger) -> Trigger:
        ERROR_TRIGGERS[code] = trigger
        return trigger

    return register


def close_trigger(code: int) -> Callable[[Trigger], Trigger]:
    def register(trigger: Trigger) -> Trigger:
        CLOSE_TRIGGERS[code] = trigger
        return trigger

    return register


# ---- error replies -------------------------------------------------------------------------


@error_trigger(100)
async def history_store_fails(start: StartServer) -> tuple[int, bool]:
    server = await start()
    wire = await Wire.open(server)
    assert server._history is not None
    await server._history.close()  # a real fault of a real store: its database is gone
    return await wire.error("publish", {"channel": "never-seen-before", "data": 1})


@error_trigger(101)
async def forged_token(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start(token_secret=SECRET), connect=False)
    return await wire.error("connect", {"token": mint_token("another-secret-of-at-least-32-bytes!", "eve")})


@error_trigger(102)
async def unknown_namespace(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("subscribe", {"channel": "nowhere:x"})


@error_trigger(103)
async def publish_where_only_the_server_may(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("publish", {"channel": "feed:x", "data": 1})


@error_trigger(104)
async def unknown_method(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("frobnicate", {})


@error_trigger(105)
async def subscribe_twice(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start())
    await wire.call("subscribe", {"channel": "news"})
    return await wire.error("subscribe", {"channel": "news"})


@error_trigger(106)
async def too_many_subscriptions(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start(max_channels_per_connection=1))
    await wire.call("subscribe", {"channel": "news"})
    return await wire.error("subscribe", {"channel": "more"})


@error_trigger(107)
async def bad_channel_name(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("subscribe", {"channel": "no spaces!"})


@error_trigger(108)
async def history_where_none_is_kept(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("history", {"channel": "feed:x"})


@error_trigger(109)
async def expired_token(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start(token_secret=SECRET), connect=False)
    return await wire.error("connect", {"token": mint_token(SECRET, "alice", ttl=-5)})


@error_trigger(110)
async def unsubscribe_unknown(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start())).error("unsubscribe", {"channel": "news"})


@error_trigger(111)
async def publish_too_fast(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start(publish_rate=0.001, publish_burst=1))
    await wire.call("publish", {"channel": "news", "data": 1})
    return await wire.error("publish", {"channel": "news", "data": 2})


@error_trigger(112)
async def history_from_a_lost_epoch(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start())
    return await wire.error("history", {"channel": "news", "since": {"offset": 0, "epoch": "gone"}})


@error_trigger(113)
async def command_before_connect(start: StartServer) -> tuple[int, bool]:
    return await (await Wire.open(await start(), connect=False)).error("subscribe", {"channel": "news"})


async def failing_connect_hook(event: ConnectEvent) -> ConnectDecision:
    raise ConnectionError("the application's database is down")


async def refusing_connect_hook(event: ConnectEvent) -> ConnectDecision:
    raise Refuse(103, "not signed in")


@error_trigger(114)
async def connect_hook_fails(start: StartServer) -> tuple[int, bool]:
    wire = await Wire.open(await start(token_secret=SECRET, hooks=Hooks(connect=failing_connect_hook)), connect=False)
    return await wire.error("connect", {})


@error_trigger(115)
async def publish_with_a_key_still_in_flight(start: StartServer) -> tuple[int, bool]:
    """Another node's publish holds the key: claimed in the same (memory) store, as it would."""
    server = await start()
    assert server._idempotency is not None
    await server._idempotency.claim("news", "order-1", 60)
    async with aiohttp.ClientSession() as http:
        body = {"channel": "news", "data": 1, "idempotency_key": "order-1"}
        async with http.post(f"{server.api_url}/api/publish", json=body) as response:
            assert response.status == 409
            error = (await response.json())["error"]
    return error["code"], ErrorCode(error["code"]).temporary


# ---- close codes ---------------------------------------------------------------------------


@close_trigger(1001)
async def server_shuts_down(start: StartServer) -> tuple[int | None, bool | None]:
    server = await start()
    wire = await Wire.open(server)
    closing = asyncio.create_task(server.close())
    try:
        return await wire.close_code()
    finally:
        await closing


async def raw_frame(start: StartServer, frame: bytes, **settings: Any) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(**settings))
    await wire.socket.send_bytes(frame)
    return await wire.close_code()


@close_trigger(1002)
async def unmasked_frame(start: StartServer) -> tuple[int | None, bool | None]:
    return await raw_frame(start, client_frame(b'{"id":2,"ping":{}}', mask=False))


@close_trigger(1003)
async def binary_frame_on_json(start: StartServer) -> tuple[int | None, bool | None]:
    return await raw_frame(start, client_frame(b'{"id":2,"ping":{}}', opcode=0x2))


@close_trigger(1007)
async def invalid_utf8(start: StartServer) -> tuple[int | None, bool | None]:
    return await raw_frame(start, client_frame(b'{"id":2,"ping":{"x":"\xff"}}'))


@close_trigger(1009)
async def frame_too_big(start: StartServer) -> tuple[int | None, bool | None]:
    return await raw_frame(start, client_frame(b" " * 2048), max_message_bytes=1024)


@close_trigger(1011)
async def no_pong(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(ping_interval=0.1, ping_timeout=0.2))
    async with asyncio.timeout(5):
        while True:  # reads everything, answers no ping
            opcode, payload = await wire.socket.read_frame()
            if opcode == 0x8:
                await wire.answer_close(payload)
                return struct.unpack("!H", payload[:2])[0], None


@close_trigger(3004)
async def unexpected_fault(start: StartServer) -> tuple[int | None, bool | None]:
    """The only trigger that injects a fault: a bug has no input that reaches it on purpose."""
    server = await start()
    assert server.hub is not None
    wire = await Wire.open(server)

    async def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    server.hub.presence = broken  # type: ignore[method-assign, assignment]
    code, temporary = await wire.error("presence", {"channel": "news"})
    assert (code, temporary) == (ErrorCode.INTERNAL, True)  # answered first
    return await wire.close_code()


@close_trigger(3005)
async def token_expires_without_refresh(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(token_secret=SECRET), mint_token(SECRET, "alice", ttl=2))
    return await wire.close_code(timeout=5)


@close_trigger(3008)
async def slow_consumer(start: StartServer) -> tuple[int | None, bool | None]:
    server = await start(max_outbox_bytes=65536)
    assert server.hub is not None
    wire = await Wire.open(server)
    await wire.call("subscribe", {"channel": "feed:big"})
    # The client reads nothing while the kernel buffers and then the outbox fill up.
    big = Raw(b'"' + b"x" * 60000 + b'"')
    for _ in range(2000):
        if not server.hub.sessions:
            break
        await server.hub.publish("feed:big", big)
        await asyncio.sleep(0)  # a yield: lets the outbox flush into the socket between publications
    return await wire.close_code()


async def disconnected_by_the_server_api(start: StartServer, reconnect: bool) -> tuple[int | None, bool | None]:
    server = await start(token_secret=SECRET)
    wire = await Wire.open(server, mint_token(SECRET, "bob"))
    async with aiohttp.ClientSession() as http:
        body = {"user": "bob", "reconnect": reconnect}
        async with http.post(f"{server.api_url}/api/disconnect", json=body) as response:
            assert response.status == 200
    return await wire.close_code()


@close_trigger(3011)
async def disconnected_with_reconnect(start: StartServer) -> tuple[int | None, bool | None]:
    return await disconnected_by_the_server_api(start, reconnect=True)


@close_trigger(3013)
async def keeps_flooding(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(command_rate=0.001, command_burst=1, max_refused_commands=3))
    for _ in range(5):
        await wire.send("ping", {})
    return await wire.close_code()


@close_trigger(3014)
async def connect_hook_unavailable(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(token_secret=SECRET, hooks=Hooks(connect=failing_connect_hook)), connect=False)
    await wire.send("connect", {})
    return await wire.close_code()


@close_trigger(3505)
async def connect_hook_refuses(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(token_secret=SECRET, hooks=Hooks(connect=refusing_connect_hook)), connect=False)
    await wire.send("connect", {})
    return await wire.close_code()


@close_trigger(3500)
async def invalid_token_closes(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(token_secret=SECRET), connect=False)
    await wire.send("connect", {"token": "not-a-jwt"})
    return await wire.close_code()


@close_trigger(3501)
async def not_a_command(start: StartServer) -> tuple[int | None, bool | None]:
    return await raw_frame(start, client_frame(b"hello"))


@close_trigger(3502)
async def no_connect_in_time(start: StartServer) -> tuple[int | None, bool | None]:
    wire = await Wire.open(await start(connect_timeout=0.2), connect=False)
    return await wire.close_code()


@close_trigger(3503)
async def disconnected_for_good(start: StartServer) -> tuple[int | None, bool | None]:
    return await disconnected_by_the_server_api(start, reconnect=False)


@close_trigger(3504)
async def one_connection_too_many(start: StartServer) -> tuple[int | None, bool | None]:
    server = await start(token_secret=SECRET, max_connections_per_user=1)
    await Wire.open(server, mint_token(SECRET, "bob"))
    second = await Wire.open(server, connect=False)
    await second.send("connect", {"token": mint_token(SECRET, "bob")})
    return await second.close_code()


def test_every_documented_code_has_a_trigger_and_every_enum_member_is_documented() -> None:
    assert set(ERROR_TRIGGERS) == set(DOCUMENTED_ERRORS)
    assert set(CLOSE_TRIGGERS) == set(DOCUMENTED_CLOSES)
    assert {int(code) for code in ErrorCode} == set(DOCUMENTED_ERRORS)
    assert {int(code) for code in DisconnectCode} <= set(DOCUMENTED_CLOSES)


@pytest.mark.parametrize("code", sorted(DOCUMENTED_ERRORS))
async def test_error_code_is_sent_with_its_documented_temporary_flag(start_server: StartServer, code: int) -> None:
    assert code in ERROR_TRIGGERS, f"no test triggers error {code}"
    sent, temporary = await ERROR_TRIGGERS[code](start_server)
    assert sent == code
    assert temporary is DOCUMENTED_ERRORS[code] is ErrorCode(code).temporary


@pytest.mark.parametrize("code", sorted(DOCUMENTED_CLOSES))
async def test_close_code_is_sent_and_means_what_the_docs_say(start_server: StartServer, code: int) -> None:
    assert code in CLOSE_TRIGGERS, f"no test triggers close {code}"
    sent, push_says_reconnect = await CLOSE_TRIGGERS[code](start_server)
    assert sent == code
    assert close_code_allows_reconnect(code) is DOCUMENTED_CLOSES[code]
    if push_says_reconnect is not None:  # closes the server decides on are announced by a push
        assert push_says_reconnect is DOCUMENTED_CLOSES[code]


def test_docs_tables_were_read() -> None:
    """A heading renamed in the docs must not turn the tests above into no-ops."""
    assert len(DOCUMENTED_ERRORS) >= 14 and len(DOCUMENTED_CLOSES) >= 15
    assert re.search(r"\| 3500 \| invalid token", PROTOCOL_DOC.read_text())
