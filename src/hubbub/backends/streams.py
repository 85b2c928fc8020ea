"""Helpers every history store shares: the clock type, and epochs derived from a salt.

Here, not in one backend, so that backends never import each other.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable

Clock = Callable[[], float]


def new_salt() -> str:
    """A store's salt: a new one (a store that lost its data) means new epochs for every channel."""
    return secrets.token_hex(16)


def epoch_for(salt: str, channel: str) -> str:
    """The epoch a channel's stream gets in a store with this salt.

    Derived, not stored, so reading or subscribing to a channel that has no publications leaves
    no record behind (clients cannot grow the store by inventing names), yet the epoch they see
    is the one the stream has once created. A new salt (a lost store) means new epochs.
    """
    digest = hashlib.blake2b(channel.encode(), key=salt.encode()[:64], digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()
