"""Sessions and the hub, in-process: commands in, frames out, no sockets."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from hubbub import protocol
from hubbub.backends.memory import MemoryBroker, MemoryHistory, MemoryPresence
from hubbub.config import Settings
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.core.hub import Hub
from hubbub.core.session import Session, State
from hubbub.errors import DisconnectCode, ErrorCode
from tests.helpers import NAMESPACES, OTHER_SECRET, SECRET, ManualLoop, RecordingSink, make_hub, make_session


class Driver:
    """Sends commands to one session and reads what came out."""

    def __init__(self, hub: Hub, loop: ManualLoop, verifier: TokenVerifier | None = None) -> None:
        self.loop = loop
        self.session, self.sink = make_session(hub, loop, verifier)
        self._ids = 0

    async def command(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._ids += 1
        line = protocol.encode({"id": self._ids, method: params or {}})
        for command in protocol.decode_frame(line):
            await self.session.handle(command)
        self.loop.run_ready()
        return self.sink.reply(self._ids)

    async def ok(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.command(method, params)
        assert "error" not in reply, reply
        return reply[method]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> int:
        reply = await self.command(method, params)
        assert "error" in reply, reply
        assert set(reply["error"]) == {"code", "message", "temporary"}
        return reply["error"]["code"]


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


@pytest.fixture
def hub(loop: ManualLoop) -> Hub:
    return make_hub(loop)


async def connected(hub: Hub, loop: ManualLoop) -> Driver:
    driver = Driver(hub, loop)
    await driver.ok("connect")
    return driver


async def test_publication_reaches_every_subscriber_once(hub: Hub, loop: ManualLoop) -> None:
    """A publication fans out to all subscribers of its channel and nobody else."""
    alice, bob, carol = [await connected(hub, loop) for _ in range(3)]
    await alice.ok("subscribe", {"channel": "news"})
    await bob.ok("subscribe", {"channel": "news"})
    await carol.ok("subscribe", {"channel": "other"})
    await alice.ok("publish", {"channel": "news", "data": {"text": "hi"}})
    loop.run_ready()
    for driver in (alice, bob):
        assert [p["data"] for p in driver.sink.pushes()] == [{"text": "hi"}]
        assert driver.sink.pushes()[0]["offset"] == 1
    assert carol.sink.pushes() == []


async def test_publication_is_encoded_once_for_all_subscribers(hub: Hub, loop: ManualLoop) -> None:
    """Every subscriber's frame is the very same bytes object (encoded and joined once)."""
    drivers = [await connected(hub, loop) for _ in range(3)]
    for driver in drivers:
        await driver.ok("subscribe", {"channel": "news"})
    await hub.publish("news", protocol.Raw(b"1"))
    await hub.publish("news", protocol.Raw(b"2"))
    loop.run_ready()
    frames = [d.sink.frames[-1] for d in drivers]
    assert frames[0] is frames[1] is frames[2]
    assert [p["data"] for p in drivers[0].sink.pushes()] == [1, 2]


async def handle_unflushed(driver: Driver, method: str, params: dict[str, Any]) -> None:
    """Run a command without ending the loop turn (no flush), as when frames arrive together."""
    driver._ids += 1
    for command in protocol.decode_frame(protocol.encode({"id": driver._ids, method: params})):
        await driver.session.handle(command)


async def test_subscriber_joining_mid_turn_gets_only_later_messages(hub: Hub, loop: ManualLoop) -> None:
    """A batch opened before a join is not extended to the newcomer; the next message is."""
    early, late = await connected(hub, loop), await connected(hub, loop)
    await early.ok("subscribe", {"channel": "news"})
    await hub.publish("news", protocol.Raw(b"1"))
    await handle_unflushed(late, "subscribe", {"channel": "news"})
    await hub.publish("news", protocol.Raw(b"2"))
    await hub.publish("news", protocol.Raw(b"3"))
    loop.run_ready()
    assert [p["data"] for p in early.sink.pushes()] == [1, 2, 3]
    assert [p["data"] for p in late.sink.pushes()] == [2, 3]
    assert late.sink.pushes()[0]["offset"] == late.sink.reply(late._ids)["subscribe"]["offset"] + 1


async def test_subscriber_leaving_mid_turn_gets_nothing_after(hub: Hub, loop: ManualLoop) -> None:
    """Messages published after an unsubscribe in the same turn do not reach the leaver."""
    stays, leaves = await connected(hub, loop), await connected(hub, loop)
    await stays.ok("subscribe", {"channel": "news"})
    await leaves.ok("subscribe", {"channel": "news"})
    await hub.publish("news", protocol.Raw(b"1"))
    await handle_unflushed(leaves, "unsubscribe", {"channel": "news"})
    await hub.publish("news", protocol.Raw(b"2"))
    loop.run_ready()
    assert [p["data"] for p in stays.sink.pushes()] == [1, 2]
    assert [p["data"] for p in leaves.sink.pushes()] == [1]


async def test_command_before_connect_is_refused(hub: Hub, loop: ManualLoop) -> None:
    """Any command but connect on a fresh session gets error 113 (not connected)."""
    driver = Driver(hub, loop)
    assert await driver.error("subscribe", {"channel": "news"}) == ErrorCode.NOT_CONNECTED


async def test_connect_timeout_closes_with_3502(hub: Hub, loop: ManualLoop) -> None:
    """A session that never sends connect is closed after connect_timeout with 3502."""
    driver = Driver(hub, loop)
    loop.advance(hub.settings.connect_timeout or 0)
    assert driver.sink.closed_with is not None
    assert driver.sink.closed_with[0] == DisconnectCode.CONNECT_TIMEOUT
    connected_driver = await connected(hub, loop)
    loop.advance(100)
    assert connected_driver.sink.closed_with is None


async def test_unknown_namespace_and_bad_names_are_refused(hub: Hub, loop: ManualLoop) -> None:
    """Unknown namespace -> 102; malformed or too long channel name -> 107."""
    driver = await connected(hub, loop)
    assert await driver.error("subscribe", {"channel": "nope:x"}) == ErrorCode.UNKNOWN_CHANNEL
    assert await driver.error("subscribe", {"channel": "bad channel"}) == ErrorCode.BAD_REQUEST
    assert await driver.error("subscribe", {"channel": "x" * 300}) == ErrorCode.BAD_REQUEST
    assert await driver.error("subscribe", {"channel": ""}) == ErrorCode.BAD_REQUEST


async def test_namespace_rules_apply(hub: Hub, loop: ManualLoop) -> None:
    """Client publish is refused where the namespace forbids it; history/presence only where enabled."""
    driver = await connected(hub, loop)
    assert await driver.error("publish", {"channel": "feed:x", "data": 1}) == ErrorCode.PERMISSION_DENIED
    assert await driver.error("history", {"channel": "feed:x"}) == ErrorCode.NOT_AVAILABLE
    assert await driver.error("presence", {"channel": "feed:x"}) == ErrorCode.NOT_AVAILABLE
    assert await driver.ok("publish", {"channel": "live:x", "data": 1}) == {}


async def test_double_subscribe_and_unknown_unsubscribe(hub: Hub, loop: ManualLoop) -> None:
    driver = await connected(hub, loop)
    await driver.ok("subscribe", {"channel": "news"})
    assert await driver.error("subscribe", {"channel": "news"}) == ErrorCode.ALREADY_SUBSCRIBED
    assert await driver.error("unsubscribe", {"channel": "other"}) == ErrorCode.NOT_SUBSCRIBED
    await driver.ok("unsubscribe", {"channel": "news"})
    assert "news" not in hub.channels


async def test_subscription_limit(loop: ManualLoop) -> None:
    """More than max_channels_per_connection subscriptions -> 106."""
    hub = make_hub(loop, max_channels_per_connection=2)
    driver = await connected(hub, loop)
    await driver.ok("subscribe", {"channel": "a"})
    await driver.ok("subscribe", {"channel": "b"})
    assert await driver.error("subscribe", {"channel": "c"}) == ErrorCode.LIMIT_EXCEEDED


async def test_send_reaches_every_connection_of_the_user(loop: ManualLoop) -> None:
    """`send` to a user pushes a message to all of that user's sessions only."""
    hub = make_hub(loop)
    verifier = TokenVerifier(secret=SECRET)
    drivers = {}
    for name, user in (("bob1", "bob"), ("bob2", "bob"), ("alice", "alice")):
        drivers[name] = Driver(hub, loop, verifier)
        await drivers[name].ok("connect", {"token": mint_token(SECRET, user)})
    await drivers["alice"].ok("send", {"user": "bob", "data": {"hey": 1}})
    loop.run_ready()
    for name in ("bob1", "bob2"):
        messages = drivers[name].sink.pushes("message")
        assert messages == [
            {"data": {"hey": 1}, "info": {"user": "alice", "client": drivers["alice"].session.client_id}}
        ]
    assert drivers["alice"].sink.pushes("message") == []


async def test_token_is_required_and_checked(loop: ManualLoop) -> None:
    """With a secret: no token -> 101, bad signature -> 101, expired -> 109, valid -> user set."""
    hub = make_hub(loop)
    verifier = TokenVerifier(secret=SECRET)
    driver = Driver(hub, loop, verifier)
    assert await driver.error("connect") == ErrorCode.UNAUTHORIZED
    assert await driver.error("connect", {"token": mint_token(OTHER_SECRET, "bob")}) == ErrorCode.UNAUTHORIZED
    assert await driver.error("connect", {"token": mint_token(SECRET, "bob", ttl=-10)}) == ErrorCode.TOKEN_EXPIRED
    result = await driver.ok("connect", {"token": mint_token(SECRET, "bob", ttl=600)})
    assert result["expires"] is True and 590 <= result["ttl"] <= 600
    assert driver.session.user == "bob"


async def test_development_mode_refuses_tokens_it_cannot_check(hub: Hub, loop: ManualLoop) -> None:
    driver = Driver(hub, loop)
    assert await driver.error("connect", {"token": "x.y.z"}) == ErrorCode.UNAUTHORIZED


async def test_expired_session_is_disconnected_unless_refreshed(loop: ManualLoop) -> None:
    """At `exp` the session closes with 3005; a refresh moves the deadline."""
    hub = make_hub(loop)
    verifier = TokenVerifier(secret=SECRET)
    driver = Driver(hub, loop, verifier)
    await driver.ok("connect", {"token": mint_token(SECRET, "bob", ttl=100)})
    loop.advance(50)
    refreshed = await driver.ok("refresh", {"token": mint_token(SECRET, "bob", ttl=300)})
    assert refreshed["expires"] is True
    loop.advance(100)
    assert driver.sink.closed_with is None
    loop.advance(250)
    assert driver.sink.closed_with is not None and driver.sink.closed_with[0] == DisconnectCode.TOKEN_EXPIRED
    assert driver.sink.pushes("disconnect")[0]["code"] == DisconnectCode.TOKEN_EXPIRED


async def test_slow_consumer_is_cut_with_3008(loop: ManualLoop) -> None:
    """A subscriber whose queue passes max_outbox_bytes is closed with 3008; others keep receiving."""
    hub = make_hub(loop, max_outbox_bytes=2000)
    slow, fast = await connected(hub, loop), await connected(hub, loop)
    await slow.ok("subscribe", {"channel": "news"})
    await fast.ok("subscribe", {"channel": "news"})
    slow.sink.paused = True
    for _ in range(100):
        await hub.publish("news", protocol.Raw(b'"%s"' % (b"x" * 50)))
        loop.run_ready()
    assert slow.sink.closed_with == (DisconnectCode.SLOW_CONSUMER, "slow consumer")
    assert slow.session.state is State.CLOSED
    assert len(fast.sink.pushes()) == 100
    assert hub.stats.slow_consumer_disconnects == 1 and hub.stats.dropped["slow_consumer"] > 0


async def test_join_and_leave_pushes_and_presence(hub: Hub, loop: ManualLoop) -> None:
    """In a join_leave namespace subscribers see joins and leaves; presence lists who is there."""
    alice, bob = await connected(hub, loop), await connected(hub, loop)
    await alice.ok("subscribe", {"channel": "chat:room"})
    await bob.ok("subscribe", {"channel": "chat:room"})
    presence = await alice.ok("presence", {"channel": "chat:room"})
    assert set(presence["clients"]) == {alice.session.client_id, bob.session.client_id}
    await bob.ok("unsubscribe", {"channel": "chat:room"})
    loop.run_ready()
    joins = [j["info"]["client"] for j in alice.sink.pushes("join")]
    leaves = [j["info"]["client"] for j in alice.sink.pushes("leave")]
    assert joins == [alice.session.client_id, bob.session.client_id]
    assert leaves == [bob.session.client_id]
    presence = await alice.ok("presence", {"channel": "chat:room"})
    assert set(presence["clients"]) == {alice.session.client_id}


async def test_closing_a_session_cleans_up_everywhere(hub: Hub, loop: ManualLoop) -> None:
    alice, bob = await connected(hub, loop), await connected(hub, loop)
    await bob.ok("subscribe", {"channel": "chat:room"})
    await alice.ok("subscribe", {"channel": "chat:room"})
    alice.session.closed()
    await hub.remove_session(alice.session)
    assert alice.session.client_id not in hub.sessions
    assert set((await hub.presence("chat:room")).clients) == {bob.session.client_id}
    assert alice.session.client_id not in hub.channels["chat:room"].live


class UnsubscribeFails(MemoryBroker):
    """A broker whose unsubscribe raises (a backend we have not written, failing its own way)."""

    async def unsubscribe(self, channel: str) -> None:
        raise OSError("the broker is gone")


async def test_a_broker_failing_to_unsubscribe_still_leaves_presence(loop: ManualLoop) -> None:
    settings = Settings(namespaces=NAMESPACES, history_path=None)
    hub = Hub(settings, UnsubscribeFails(), MemoryHistory(clock=loop.clock), MemoryPresence(), call_soon=loop.call_soon)
    alice = await connected(hub, loop)
    await alice.ok("subscribe", {"channel": "chat:room"})
    alice.session.closed()
    await hub.remove_session(alice.session)  # logs the failure, goes on with the cleanup
    assert (await hub.presence("chat:room")).clients == {}


class UnsubscribeFailsFor(MemoryBroker):
    """A broker that fails to unsubscribe from one channel."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    async def unsubscribe(self, channel: str) -> None:
        if channel == self.failing:
            raise OSError("the broker is gone")
        await super().unsubscribe(channel)


class SuspendingPresence(MemoryPresence):
    """Removals that wait, as a networked store's do."""

    async def remove(self, channel: str, client_id: str) -> None:
        await asyncio.sleep(0)
        await super().remove(channel, client_id)


async def test_a_failed_unsubscribe_leaves_no_exception_behind(loop: ManualLoop) -> None:
    """Compiled by mypyc (up to 2.4.1 at least, mypyc/mypyc#1114), an exception that left a
    `finally` block which awaited stayed the thread's current exception, and the next such block
    to finish normally raised it again: after one broker failure, unsubscribes of unrelated
    channels failed with "internal error". The hub's cleanup waits outside `finally`."""
    settings = Settings(namespaces=NAMESPACES, history_path=None)
    broker = UnsubscribeFailsFor("chat:a")
    hub = Hub(settings, broker, MemoryHistory(clock=loop.clock), SuspendingPresence(), call_soon=loop.call_soon)
    alice, bob = await connected(hub, loop), await connected(hub, loop)
    await alice.ok("subscribe", {"channel": "chat:a"})
    await bob.ok("subscribe", {"channel": "chat:b"})
    # Each in a task of its own, as the server runs them: the compiled coroutine is then what the
    # task steps, and the thread's exception state is the one it changes.
    with pytest.raises(OSError, match="the broker is gone"):
        await asyncio.ensure_future(hub.unsubscribe(alice.session, "chat:a"))
    await asyncio.ensure_future(hub.unsubscribe(bob.session, "chat:b"))  # raised the OSError again
    assert sys.exc_info() == (None, None, None)
    assert (await hub.presence("chat:a")).clients == {}  # the failed one still left presence
    assert (await hub.presence("chat:b")).clients == {}


async def test_recovery_returns_exactly_the_missed_publications(hub: Hub, loop: ManualLoop) -> None:
    """Subscribe with since gets the publications after it, then the live stream."""
    for i in range(1, 4):
        await hub.publish("news", protocol.Raw(b"%d" % i))
    epoch = (await hub.history_store.top("news")).epoch
    driver = await connected(hub, loop)
    result = await driver.ok("subscribe", {"channel": "news", "since": {"offset": 1, "epoch": epoch}})
    assert result["recovered"] is True and result["was_recovering"] is True
    assert [p["offset"] for p in result["publications"]] == [2, 3]
    await hub.publish("news", protocol.Raw(b"4"))
    loop.run_ready()
    assert [p["offset"] for p in driver.sink.pushes()] == [4]


async def test_recovery_fails_cleanly_when_the_window_is_exceeded(hub: Hub, loop: ManualLoop) -> None:
    """Publications pushed out of history, or a new epoch -> recovered false and no publications."""
    for i in range(10):
        await hub.publish("chat:r", protocol.Raw(b"%d" % i))  # history_size 5
    epoch = (await hub.history_store.top("chat:r")).epoch
    driver = await connected(hub, loop)
    result = await driver.ok("subscribe", {"channel": "chat:r", "since": {"offset": 2, "epoch": epoch}})
    assert result["recovered"] is False and "publications" not in result and result["offset"] == 10
    other = await connected(hub, loop)
    result = await other.ok("subscribe", {"channel": "chat:r", "since": {"offset": 8, "epoch": "stale"}})
    assert result["recovered"] is False


async def test_recovery_is_limited_by_recovery_max_publications(loop: ManualLoop) -> None:
    hub = make_hub(loop, recovery_max_publications=3)
    for i in range(6):
        await hub.publish("news", protocol.Raw(b"%d" % i))
    epoch = (await hub.history_store.top("news")).epoch
    driver = await connected(hub, loop)
    result = await driver.ok("subscribe", {"channel": "news", "since": {"offset": 1, "epoch": epoch}})
    assert result["recovered"] is False
    result = await driver.ok("history", {"channel": "news", "limit": 2})
    assert [p["offset"] for p in result["publications"]] == [1, 2]


async def test_publications_during_recovery_are_neither_lost_nor_duplicated(loop: ManualLoop) -> None:
    """A publication racing the history read is delivered exactly once, after the reply."""
    hub = make_hub(loop)
    store = hub.history_store
    for i in range(1, 3):
        await hub.publish("news", protocol.Raw(b"%d" % i))
    epoch = (await store.top("news")).epoch
    original_read = store.read

    async def read_while_publishing(*args: Any, **kwargs: Any) -> Any:
        await hub.publish("news", protocol.Raw(b"3"))  # before the read: in the page
        page = await original_read(*args, **kwargs)
        await hub.publish("news", protocol.Raw(b"4"))  # after the read: live
        return page

    store.read = read_while_publishing  # type: ignore[method-assign]
    driver = await connected(hub, loop)
    await driver.ok("subscribe", {"channel": "news", "since": {"offset": 1, "epoch": epoch}})
    loop.run_ready()
    messages = driver.sink.messages()
    reply_index = next(i for i, m in enumerate(messages) if m.get("id") == 2)
    recovered = [p["offset"] for p in messages[reply_index]["subscribe"]["publications"]]
    live = [m["push"]["pub"]["offset"] for m in messages[reply_index + 1 :] if "push" in m]
    assert recovered + live == [2, 3, 4]


async def test_history_expires_after_ttl(hub: Hub, loop: ManualLoop) -> None:
    """Publications older than the namespace's history_ttl are gone; offsets keep counting."""
    await hub.publish("news", protocol.Raw(b"1"))
    loop.advance(61)
    await hub.publish("news", protocol.Raw(b"2"))
    result = await hub.history("news", None, None, False)
    assert [p.offset for p in result.publications] == [2]
    assert result.offset == 2


async def test_conflated_channel_gives_slow_reader_the_latest(hub: Hub, loop: ManualLoop) -> None:
    """On a conflate namespace a backed-up reader gets the newest value, a fast one all."""
    slow, fast = await connected(hub, loop), await connected(hub, loop)
    await slow.ok("subscribe", {"channel": "live:price"})
    await fast.ok("subscribe", {"channel": "live:price"})
    slow.sink.paused = True
    await hub.publish("live:price", protocol.Raw(b"0"))
    loop.run_ready()
    for i in range(1, 50):
        await hub.publish("live:price", protocol.Raw(b"%d" % i))
        loop.run_ready()
    slow.sink.resume()
    loop.run_ready()
    assert [p["data"] for p in slow.sink.pushes()] == [0, 49]
    assert [p["data"] for p in fast.sink.pushes()] == list(range(50))
    assert hub.stats.dropped["conflated"] == 48  # 1..48 replaced while the reader was backed up
    assert slow.sink.closed_with is None


async def test_bad_parameters_get_107_with_the_field_named(hub: Hub, loop: ManualLoop) -> None:
    driver = await connected(hub, loop)
    reply = await driver.command("subscribe", {"chanel": "x"})
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST and "chanel" in reply["error"]["message"]


async def test_user_disconnect_reaches_all_sessions(loop: ManualLoop) -> None:
    hub = make_hub(loop)
    verifier = TokenVerifier(secret=SECRET)
    bob = Driver(hub, loop, verifier)
    await bob.ok("connect", {"token": mint_token(SECRET, "bob")})
    await hub.disconnect_user("bob")
    assert bob.sink.closed_with is not None and bob.sink.closed_with[0] == DisconnectCode.FORCE_DISCONNECT
    assert bob.sink.pushes("disconnect") == [
        {"code": DisconnectCode.FORCE_DISCONNECT, "reason": "disconnected by server", "reconnect": False}
    ]


def test_session_ids_are_unique() -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    ids = {Session(hub, RecordingSink(), verifier=None, call_later=loop.call_later).client_id for _ in range(100)}
    assert len(ids) == 100


async def test_session_dropped_during_subscribe_leaves_nothing_behind(hub: Hub, loop: ManualLoop) -> None:
    """A disconnect while subscribe reads history: no reply, no subscriber, no presence entry."""
    driver = await connected(hub, loop)
    original_top = hub.history_store.top

    async def top_then_drop(channel: str) -> Any:
        driver.session.disconnect(DisconnectCode.FORCE_DISCONNECT, "bye", notify=False)
        loop.run_ready()  # the deferred detach
        return await original_top(channel)

    hub.history_store.top = top_then_drop  # type: ignore[method-assign]
    await driver.session.handle(protocol.decode_frame(b'{"id":5,"subscribe":{"channel":"chat:r"}}')[0])
    await hub.remove_session(driver.session)
    assert not [m for m in driver.sink.messages() if m.get("id") == 5]
    assert "chat:r" not in hub.channels
    assert (await hub.presence("chat:r")).clients == {}


async def test_conflated_subscribe_starts_from_a_snapshot(loop: ManualLoop) -> None:
    """On a conflated namespace with history, subscribe replies with the newest value at once,
    and so does a resubscribe whose gap cannot be filled."""
    from hubbub.config import NamespaceOptions

    hub = make_hub(loop, namespaces={"ticker": NamespaceOptions(history_size=1, conflate=True)})
    for price in (1, 2, 3):
        await hub.publish("ticker:ABC", protocol.Raw(b"%d" % price))
    reader = await connected(hub, loop)
    result = await reader.ok("subscribe", {"channel": "ticker:ABC"})
    assert [p["data"] for p in result["publications"]] == [3] and result["offset"] == 3
    await hub.publish("ticker:ABC", protocol.Raw(b"4"))
    loop.run_ready()
    assert [p["data"] for p in reader.sink.pushes()] == [4]
    epoch = result["epoch"]
    for price in (5, 6):
        await hub.publish("ticker:ABC", protocol.Raw(b"%d" % price))
    late = await connected(hub, loop)
    again = await late.ok("subscribe", {"channel": "ticker:ABC", "since": {"offset": 3, "epoch": epoch}})
    assert again["recovered"] is False and [p["data"] for p in again["publications"]] == [6]
