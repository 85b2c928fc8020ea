"""Who may do what on a channel: one check shared by every command.

Permission values (NamespaceOptions.subscribe / publish / read_history / read_presence):
- anyone: any connection allowed in the namespace;
- authenticated: connections with a user id (a token);
- members: users named in the channel, `dm:alice,bob`;
- owner: the user the channel is named after, `user:alice`;
- token: holders of a subscription token for this channel (see Session.grants);
- server: nobody over WebSocket, only the server API.
Anonymous connections reach a namespace only when it sets `allow_anonymous` (or in development
mode). The `user` namespace is personal whatever its settings say: only its owner reads it.
"""

from __future__ import annotations

from typing import Final

from hubbub.config import NamespaceOptions
from hubbub.core.auth import Credentials
from hubbub.errors import CommandError, ErrorCode

PERSONAL_NAMESPACE: Final = "user"
READ_ACTIONS: Final = ("subscribe", "read_history", "read_presence")


def channel_parts(channel: str) -> tuple[str, str]:
    namespace, _, name = channel.rpartition(":")
    return namespace, name


def is_member(user: str, name: str) -> bool:
    return bool(user) and user in name.split(",")


def check(
    action: str,
    options: NamespaceOptions,
    channel: str,
    credentials: Credentials,
    *,
    development_mode: bool,
    granted: bool = False,
) -> None:
    """Raise 103 (permission denied) unless `credentials` may do `action` on `channel`."""
    namespace, name = channel_parts(channel)
    user = credentials.user
    if credentials.anonymous and not development_mode and not options.allow_anonymous:
        raise CommandError(ErrorCode.PERMISSION_DENIED, "permission denied: this namespace needs a token")
    if namespace == PERSONAL_NAMESPACE and action in READ_ACTIONS and name != user:
        raise CommandError(ErrorCode.PERMISSION_DENIED, "permission denied: a personal channel of another user")
    permission = getattr(options, action)
    if permission == "anyone":
        allowed = True
    elif permission == "authenticated":
        allowed = not credentials.anonymous
    elif permission == "members":
        allowed = is_member(user, name)
    elif permission == "owner":
        allowed = bool(user) and name == user
    elif permission == "token":
        allowed = granted
    else:  # "server"
        allowed = False
    if not allowed:
        raise CommandError(ErrorCode.PERMISSION_DENIED, f"permission denied: {action} needs {permission}")
