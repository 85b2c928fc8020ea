"""Subscription tokens: a subscription made with one lasts until its `exp`, unless refreshed in-band."""

from __future__ import annotations

import pytest

from hubbub import protocol
from hubbub.config import NamespaceOptions
from hubbub.core.auth import TokenVerifier, mint_token
from hubbub.core.hub import Hub
from hubbub.errors import ErrorCode
from tests.core.test_session import Driver
from tests.helpers import NAMESPACES, SECRET, ManualLoop, make_hub

VIP = {**NAMESPACES, "vip": NamespaceOptions(subscribe="token", history_size=10, history_ttl=600, publish="anyone")}


@pytest.fixture
def hub(loop: ManualLoop) -> Hub:
    return make_hub(loop, namespaces=VIP, refresh_before=25)


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


async def alice(hub: Hub, loop: ManualLoop) -> Driver:
    driver = Driver(hub, loop, TokenVerifier(secret=SECRET))
    await driver.ok("connect", {"token": mint_token(SECRET, "alice", ttl=3600)})
    return driver


def pass_token(ttl: float | None, channel: str = "vip:gala", user: str = "alice") -> str:
    return mint_token(SECRET, user, ttl=ttl, channel=channel)


async def test_subscription_ends_at_its_tokens_expiry_with_an_unsubscribe_push(hub: Hub, loop: ManualLoop) -> None:
    """At exp the server pushes unsubscribe (code 109) and delivers nothing more; the connection stays."""
    driver = await alice(hub, loop)
    await driver.ok("subscribe", {"channel": "vip:gala", "token": pass_token(100)})
    await hub.publish("vip:gala", protocol.Raw(b"1"))
    loop.run_ready()
    loop.advance(101)
    await hub.wait_spawned()
    await hub.publish("vip:gala", protocol.Raw(b"2"))
    loop.run_ready()
    assert [p["data"] for p in driver.sink.pushes()] == [1]
    assert driver.sink.pushes("unsubscribe") == [
        {"code": ErrorCode.TOKEN_EXPIRED, "reason": "subscription token expired"}
    ]
    assert "vip:gala" not in driver.session.channels and "vip:gala" not in hub.channels
    assert driver.sink.closed_with is None
    # The grant went with the subscription: no token, no way back in.
    assert await driver.error("subscribe", {"channel": "vip:gala"}) == ErrorCode.PERMISSION_DENIED


async def test_server_asks_for_a_new_token_ahead_of_expiry_and_sub_refresh_extends_it(
    hub: Hub, loop: ManualLoop
) -> None:
    """refresh_before seconds ahead of exp a sub_refresh push; a sub_refresh command moves exp."""
    driver = await alice(hub, loop)
    await driver.ok("subscribe", {"channel": "vip:gala", "token": pass_token(100)})
    loop.advance(76)
    assert [push["ttl"] for push in driver.sink.pushes("sub_refresh")] in ([23], [24], [25])
    result = await driver.ok("sub_refresh", {"channel": "vip:gala", "token": pass_token(600)})
    assert result["expires"] is True and 600 - 76 - 2 <= result["ttl"] <= 600 - 76  # by the session's clock
    loop.advance(100)  # past the first token's exp
    await hub.wait_spawned()
    assert driver.sink.pushes("unsubscribe") == [] and "vip:gala" in driver.session.channels
    loop.advance(600)
    await hub.wait_spawned()
    assert driver.sink.pushes("unsubscribe") != [] and "vip:gala" not in driver.session.channels


async def test_unsubscribe_drops_the_grant(hub: Hub, loop: ManualLoop) -> None:
    """A permission a token gave does not outlive its subscription."""
    driver = await alice(hub, loop)
    await driver.ok("subscribe", {"channel": "vip:gala", "token": pass_token(None)})
    await driver.ok("unsubscribe", {"channel": "vip:gala"})
    assert await driver.error("subscribe", {"channel": "vip:gala"}) == ErrorCode.PERMISSION_DENIED
    assert driver.session.grants == {}


async def test_a_refused_subscribe_leaves_no_grant(loop: ManualLoop) -> None:
    """A valid token, but the subscribe fails for another reason (too many subscriptions)."""
    driver = await alice(make_hub(loop, namespaces=VIP, max_channels_per_connection=0), loop)
    token = pass_token(600, channel="vip:a,b")
    assert await driver.error("subscribe", {"channel": "vip:a,b", "token": token}) == ErrorCode.LIMIT_EXCEEDED
    assert driver.session.grants == {}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"channel": "vip:other", "token": "x"}, ErrorCode.NOT_SUBSCRIBED),
        ({"channel": "news", "token": "x"}, ErrorCode.BAD_REQUEST),  # subscribed without a token
        ({"channel": "vip:gala", "token": "not-a-jwt"}, ErrorCode.UNAUTHORIZED),
        ({"channel": "vip:gala", "token": "EXPIRED"}, ErrorCode.TOKEN_EXPIRED),
        ({"channel": "vip:gala", "token": "OTHER-CHANNEL"}, ErrorCode.PERMISSION_DENIED),
        ({"channel": "vip:gala", "token": "OTHER-USER"}, ErrorCode.PERMISSION_DENIED),
    ],
)
async def test_sub_refresh_refusals(hub: Hub, loop: ManualLoop, params: dict[str, str], code: int) -> None:
    """A refused sub_refresh leaves the subscription and its old expiry as they were."""
    tokens = {
        "EXPIRED": pass_token(-5),
        "OTHER-CHANNEL": pass_token(600, channel="vip:other"),
        "OTHER-USER": pass_token(600, user="bob"),
    }
    driver = await alice(hub, loop)
    await driver.ok("subscribe", {"channel": "vip:gala", "token": pass_token(100)})
    await driver.ok("subscribe", {"channel": "news"})
    params = {**params, "token": tokens.get(params["token"], params["token"])}
    assert await driver.error("sub_refresh", params) == code
    loop.advance(101)
    await hub.wait_spawned()
    assert "vip:gala" not in driver.session.channels  # the old expiry still held


async def test_subscription_tokens_cannot_connect(hub: Hub, loop: ManualLoop) -> None:
    driver = Driver(hub, loop, TokenVerifier(secret=SECRET))
    assert await driver.error("connect", {"token": pass_token(600)}) == ErrorCode.UNAUTHORIZED
