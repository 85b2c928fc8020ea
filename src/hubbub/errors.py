"""Errors shared by server, clients and the wire protocol.

Exception tree::

    HubbubError
    ├── ConfigError        bad setting at start-up; names the key
    ├── ProtocolError      a frame we cannot parse; the connection is closed (3501)
    ├── CommandError       a command refused; becomes an error reply {code, message, temporary}
    └── ClientError        raised by hubbub.Client
        ├── ReplyError     the server answered a command with an error
        └── ConnectionLost the connection dropped before the reply arrived

Error codes (replies) and disconnect codes (WebSocket close) are stable wire values,
documented in docs/protocol.md. Disconnect codes in 3000-3499 tell clients to reconnect;
3500-3999 tell them not to.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ClientError",
    "CommandError",
    "ConfigError",
    "ConnectionLost",
    "DisconnectCode",
    "ErrorCode",
    "HubbubError",
    "ProtocolError",
    "ReplyError",
]


class ErrorCode(IntEnum):
    """Codes of error replies. The `temporary` ones are worth retrying."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    NOT_SUBSCRIBED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112
    NOT_CONNECTED = 113

    @property
    def temporary(self) -> bool:
        return self in _TEMPORARY_ERRORS


# NOT_AVAILABLE is not among them: history or presence on a namespace without it stays unavailable.
_TEMPORARY_ERRORS = frozenset({ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS})


class DisconnectCode(IntEnum):
    """WebSocket close codes the server uses (RFC 6455 section 7.4 plus our 3000-3999 range)."""

    GOING_AWAY = 1001  # server shutting down: reconnect (to another node)
    UNSUPPORTED_DATA = 1003  # binary frame on the JSON protocol
    MESSAGE_TOO_BIG = 1009  # frame above max_message_bytes
    INTERNAL_ERROR = 1011  # no pong within ping_timeout (the keepalive)
    # 3000-3499: the client should reconnect (with backoff) and recover.
    INTERNAL = 3004  # an unexpected fault while serving this connection (logged): its state is suspect
    TOKEN_EXPIRED = 3005
    SLOW_CONSUMER = 3008
    FORCE_RECONNECT = 3011
    TOO_MANY_REQUESTS = 3013
    # 3500-3999: the client should not reconnect without changing something.
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    CONNECT_TIMEOUT = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504

    @property
    def reconnect(self) -> bool:
        return close_code_allows_reconnect(self.value)


def close_code_allows_reconnect(code: int | None) -> bool:
    """Whether a client should reconnect after a close with this code."""
    if code is None:
        return True
    return not (3500 <= code <= 3999 or code in (1002, 1003, 1007, 1008, 1009, 1010))


class HubbubError(Exception):
    """Base of every error hubbub raises on purpose."""


class ConfigError(HubbubError):
    """A setting is unknown or has a bad value; the message names the key."""


class ProtocolError(HubbubError):
    """A frame is not valid protocol; the connection cannot continue."""


class CommandError(HubbubError):
    """A command was refused; sent to the client as an error reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def temporary(self) -> bool:
        return self.code.temporary


class ClientError(HubbubError):
    """Base of errors raised by the Python client."""


class ReplyError(ClientError):
    """The server answered a command with an error reply."""

    def __init__(self, code: int, message: str, temporary: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary


class ConnectionLost(ClientError):
    """The connection dropped before a reply arrived; the command may or may not have run."""
