"""Publish limits per user and per namespace, and one name per direct-message conversation."""

from __future__ import annotations

import pytest

from hubbub.config import Settings
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.core.hub import Hub
from hubbub.errors import ErrorCode
from tests.core.test_session import Driver
from tests.helpers import SECRET, ManualLoop, make_hub


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


def embedded_hub(loop: ManualLoop, **overrides: object) -> Hub:
    """The namespaces `hubbub serve` ships with (what the chat uses)."""
    return make_hub(loop, namespaces=Settings().namespaces, **overrides)


async def signed_in(hub: Hub, loop: ManualLoop, user: str) -> Driver:
    driver = Driver(hub, loop, TokenVerifier(secret=SECRET))
    await driver.ok("connect", {"token": mint_token(SECRET, user)})
    return driver


async def test_a_users_connections_share_one_publish_budget(loop: ManualLoop) -> None:
    """user_publish_rate holds however many connections the user opens; other users are unaffected."""
    hub = embedded_hub(loop, user_publish_rate=0.001, user_publish_burst=3, publish_rate=100, publish_burst=100)
    tabs = [await signed_in(hub, loop, "alice") for _ in range(3)]
    bob = await signed_in(hub, loop, "bob")
    for tab in tabs:
        await tab.ok("publish", {"channel": "news", "data": 1})  # 3 of 3
    for tab in tabs:
        assert await tab.error("publish", {"channel": "news", "data": 2}) == ErrorCode.TOO_MANY_REQUESTS
        assert await tab.error("send", {"user": "bob", "data": 2}) == ErrorCode.TOO_MANY_REQUESTS
    await bob.ok("publish", {"channel": "news", "data": 3})
    assert hub.limit_hits["publications by this user"] == 6


async def test_the_user_budget_is_forgotten_with_the_users_last_connection(loop: ManualLoop) -> None:
    hub = embedded_hub(loop, user_publish_rate=0.001, user_publish_burst=1)
    first = await signed_in(hub, loop, "alice")
    await first.ok("publish", {"channel": "news", "data": 1})
    first.session.closed()
    again = await signed_in(hub, loop, "alice")
    await again.ok("publish", {"channel": "news", "data": 2})  # a new budget: memory stays bounded
    assert list(hub._user_publishes) == ["alice"]


async def test_typing_signals_have_their_own_rate(loop: ManualLoop) -> None:
    """typing: and dm-typing: allow a burst of 3, then one per 2 s; other publications are not slowed."""
    hub = embedded_hub(loop)
    alice = await signed_in(hub, loop, "alice")
    for _ in range(3):
        await alice.ok("publish", {"channel": "typing:lobby", "data": {"typing": True}})
    assert await alice.error("publish", {"channel": "typing:lobby", "data": {"typing": True}}) == 111
    await alice.ok("publish", {"channel": "room:lobby", "data": {"text": "hi"}})
    options = hub.namespace("typing:lobby")
    assert (options.publish_rate, options.publish_burst) == (0.5, 3)
    assert hub.namespace("dm-typing:alice,bob").publish_rate == 0.5


async def test_dm_typing_is_readable_by_the_two_members_only(loop: ManualLoop) -> None:
    hub = embedded_hub(loop)
    alice, carol = await signed_in(hub, loop, "alice"), await signed_in(hub, loop, "carol")
    await alice.ok("subscribe", {"channel": "dm-typing:alice,bob"})
    await alice.ok("publish", {"channel": "dm-typing:alice,bob", "data": {"typing": True}})
    assert await carol.error("subscribe", {"channel": "dm-typing:alice,bob"}) == ErrorCode.PERMISSION_DENIED
    assert await carol.error("publish", {"channel": "dm-typing:alice,bob", "data": 1}) == ErrorCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("channel", "canonical"),
    [("dm:bob,alice", "dm:alice,bob"), ("dm:alice,alice", "dm:alice"), ("dm:alice,,bob", "dm:alice,bob")],
)
async def test_one_conversation_has_one_channel_name(loop: ManualLoop, channel: str, canonical: str) -> None:
    """Member-named channels list their members sorted, once each; other spellings are refused (107)
    with the name to use, so `dm:alice,bob` and `dm:bob,alice` can never be two conversations."""
    hub = embedded_hub(loop)
    alice = await signed_in(hub, loop, "alice")
    reply = await alice.command("subscribe", {"channel": channel})
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST and f"use '{canonical}'" in reply["error"]["message"]
    await alice.ok("subscribe", {"channel": canonical})
