"""The permission matrix, and rate-limit buckets."""

from __future__ import annotations

import pytest

from hubbub.config import NamespaceOptions
from hubbub.core.auth import ANONYMOUS, Credentials
from hubbub.core.permissions import check
from hubbub.core.ratelimit import KeyedBuckets, TokenBucket
from hubbub.errors import CommandError

ALICE = Credentials(user="alice")


def allowed(
    permission: str, channel: str, who: Credentials, *, granted: bool = False, anonymous_ok: bool = True
) -> bool:
    options = NamespaceOptions(subscribe=permission, allow_anonymous=anonymous_ok)
    try:
        check("subscribe", options, channel, who, development_mode=False, granted=granted)
    except CommandError:
        return False
    return True


@pytest.mark.parametrize(
    ("permission", "channel", "who", "granted", "expected"),
    [
        ("anyone", "news", ANONYMOUS, False, True),
        ("authenticated", "news", ANONYMOUS, False, False),
        ("authenticated", "news", ALICE, False, True),
        ("members", "dm:alice,bob", ALICE, False, True),
        ("members", "dm:bob,carol", ALICE, False, False),
        ("members", "dm:alicex,bob", ALICE, False, False),
        ("members", "dm:,bob", ANONYMOUS, False, False),
        ("owner", "inbox:alice", ALICE, False, True),
        ("owner", "inbox:bob", ALICE, False, False),
        ("token", "vip:room", ALICE, True, True),
        ("token", "vip:room", ALICE, False, False),
        ("server", "news", ALICE, True, False),
    ],
)
def test_permission_matrix(permission: str, channel: str, who: Credentials, granted: bool, expected: bool) -> None:
    assert allowed(permission, channel, who, granted=granted) is expected


def test_anonymous_needs_allow_anonymous_unless_development_mode() -> None:
    options = NamespaceOptions(subscribe="anyone")
    with pytest.raises(CommandError):
        check("subscribe", options, "news", ANONYMOUS, development_mode=False)
    check("subscribe", options, "news", ANONYMOUS, development_mode=True)


def test_personal_channels_are_readable_only_by_their_user() -> None:
    """user:<id> is personal even if its namespace is configured wide open."""
    options = NamespaceOptions(subscribe="anyone", read_history="anyone", read_presence="anyone", publish="anyone")
    for action in ("subscribe", "read_history", "read_presence"):
        check(action, options, "user:alice", ALICE, development_mode=False)
        with pytest.raises(CommandError):
            check(action, options, "user:bob", ALICE, development_mode=False)


def test_token_bucket_allows_burst_then_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() is True and bucket.take() is False
    assert TokenBucket(None, 1).take() and TokenBucket(None, 1).take()


def test_keyed_buckets_are_per_key_and_forget_old_keys() -> None:
    now = [0.0]
    buckets = KeyedBuckets(rate=1, burst=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [True, True, False]
    assert buckets.take("b") is True
    now[0] += 10
    assert buckets.take("a") is True
    assert len(buckets._buckets) == 1  # the sweep dropped refilled keys
