"""What the hub needs of a connection, so the hub never imports the session that implements it.

centrifuge's Node knows its clients only through a few methods in the same way: the hub keeps
who is subscribed to what (memberships are the hub's state, not the member's), queues frames
in the member's outbox, and asks it to disconnect; nothing else.
"""

from __future__ import annotations

from typing import Protocol

from hubbub import protocol
from hubbub.core.outbox import Outbox


class Member(Protocol):
    """One connected client as the hub sees it (core/session.py's Session)."""

    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str:
        """The user id, "" when anonymous."""
        ...

    @property
    def info(self) -> protocol.ClientInfo:
        """Who it is, as presence, join/leave and publication info show it."""
        ...

    def info_in(self, channel: str) -> protocol.ClientInfo:
        """`info`, with what the subscribe hook said about it in `channel` (chan_info)."""
        ...

    @property
    def outbox(self) -> Outbox: ...

    def disconnect(self, code: int, reason: str, *, notify: bool = True) -> None:
        """Close the connection with `code` (a disconnect push first, with `notify`)."""
        ...

    def subscribe_by_server(self, channel: str) -> None:
        """Subscribe to `channel` because the server says so (no permission check)."""
        ...

    def unsubscribe_by_server(self, channel: str) -> None:
        """End the subscription to `channel` because the server says so."""
        ...
