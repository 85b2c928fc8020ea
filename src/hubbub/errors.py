"""Errors shared by server, clients and the wire protocol.

Exception tree::

    HubbubError
    ├── ConfigError        bad setting at start-up; names the key
    ├── ProtocolError      a frame we cannot parse; the connection is closed (3501)
    ├── CommandError       a command refused; becomes an error reply {code, message, temporary}
    │   └── Refuse         raised by an application hook to refuse (its own code 1000-1999 allowed)
    ├── ClientError        raised by hubbub.Client
    │   ├── ReplyError     the server answered a command with an error
    │   └── ConnectionLost the connection dropped before the reply arrived
    └── PublisherError     raised by hubbub.Publisher and AsyncPublisher (after their retries)
        ├── PublisherNetworkError  the server API could not be reached
        ├── PublisherTimeout       no answer within the timeout
        └── ApiError               the server answered with an error {code, message}
            └── Unauthorized       a missing or wrong API key (HTTP 401/403)

Error codes (replies) and disconnect codes (WebSocket close) are stable wire values,
documented in docs/protocol.md. Disconnect codes in 3000-3499 tell clients to reconnect;
3500-3999 tell them not to.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ApiError",
    "ClientError",
    "CommandError",
    "ConfigError",
    "ConnectionLost",
    "DisconnectCode",
    "ErrorCode",
    "HubbubError",
    "ProtocolError",
    "PublisherError",
    "PublisherNetworkError",
    "PublisherTimeout",
    "Refuse",
    "ReplyError",
    "Unauthorized",
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
    APPLICATION_UNAVAILABLE = 114  # an application hook timed out, failed or answered garbage
    IN_PROGRESS = 115  # a publish with the same idempotency key is still running

    @property
    def temporary(self) -> bool:
        return self in _TEMPORARY_ERRORS


# NOT_AVAILABLE is not among them: history or presence on a namespace without it stays unavailable.
_TEMPORARY_ERRORS = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.APPLICATION_UNAVAILABLE, ErrorCode.IN_PROGRESS}
)


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
    APPLICATION_UNAVAILABLE = 3014  # the connect hook did not answer: try again later
    # 3500-3999: the client should not reconnect without changing something.
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    CONNECT_TIMEOUT = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CONNECT_REFUSED = 3505  # the application's connect hook refused the connection

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
    """A command was refused; sent to the client as an error reply.

    `code` is one of ErrorCode, or an application's own code (1000-1999) from a hook's refusal.
    """

    def __init__(self, code: ErrorCode | int, message: str, *, temporary: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self._temporary = temporary

    @property
    def temporary(self) -> bool:
        if self._temporary is not None:
            return self._temporary
        return isinstance(self.code, ErrorCode) and self.code.temporary


class Refuse(CommandError):
    """Raised by an application hook: the client gets an error reply with this code and message.

    Codes: one of ErrorCode (103 permission denied is the usual one) or the application's own,
    1000-1999. `temporary` tells the client whether a retry may succeed.
    """

    def __init__(self, code: int = 103, message: str = "refused by the application", *, temporary: bool = False):
        if not (code in ErrorCode._value2member_map_ or APPLICATION_CODES[0] <= code <= APPLICATION_CODES[1]):
            raise ValueError(f"refusal code {code}: use an ErrorCode or 1000-1999")
        super().__init__(
            ErrorCode(code) if code in ErrorCode._value2member_map_ else code, message, temporary=temporary
        )


APPLICATION_CODES = (1000, 1999)  # error codes an application's hooks may use for refusals


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


class PublisherError(HubbubError):
    """Base of errors raised by hubbub.Publisher and hubbub.AsyncPublisher."""


class PublisherNetworkError(PublisherError):
    """The server API could not be reached (refused, reset, DNS); the call did not land or may have."""


class PublisherTimeout(PublisherError):
    """No answer within the timeout; the call may have landed (publishes are idempotent)."""


class ApiError(PublisherError):
    """The server answered with an error: `code` from the error table, HTTP `status`."""

    def __init__(self, code: int, message: str, temporary: bool = False, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        self.status = status


class Unauthorized(ApiError):
    """The API key is missing or wrong (or the caller is not on loopback without a key)."""
