"""The hubbub.json.v1 wire protocol, shared by the server and the clients.

A frame holds one or more messages separated by "\\n". A command is a JSON object with an
integer `id` and exactly one method field (`{"id": 1, "subscribe": {"channel": "news"}}`);
its reply carries the same `id` and either the method's result or `error`. Pushes carry no
`id`: `{"push": {"channel": ..., "pub": {...}}}`. docs/protocol.md documents every message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Raw, Struct

from hubbub.errors import CommandError, ErrorCode, ProtocolError

SUBPROTOCOL_JSON = "hubbub.json.v1"
SUBPROTOCOL_MSGPACK = "hubbub.msgpack.v1"
SUBPROTOCOL_GRAPHQL = "graphql-transport-ws"  # served at the graphql_path (transports/graphql_ws.py)
MAX_COMMAND_ID = 2**53 - 1  # largest integer every JSON parser keeps exact


class Request(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of command parameters: unknown fields are an error, not silently ignored."""


class StreamPosition(Struct, forbid_unknown_fields=True):
    """A point in a channel's history: `offset` of the last publication seen, and the `epoch`."""

    offset: int
    epoch: str


class ConnectRequest(Request):
    token: str | None = None
    name: str | None = None
    version: str | None = None
    data: Raw = Raw(b"null")  # anything for the application's connect hook
    subs: dict[str, StreamPosition] | None = None  # where server-side subscriptions left off


class SubscribeRequest(Request):
    channel: str
    since: StreamPosition | None = None
    token: str | None = None
    data: Raw = Raw(b"null")  # anything for the application's subscribe hook


class UnsubscribeRequest(Request):
    channel: str


class PublishRequest(Request):
    channel: str
    data: Raw


class HistoryRequest(Request):
    channel: str
    since: StreamPosition | None = None
    limit: int | None = None
    reverse: bool = False


class PresenceRequest(Request):
    channel: str


class SendRequest(Request):
    user: str
    data: Raw


class RefreshRequest(Request):
    token: str


class SubRefreshRequest(Request):
    """A new subscription token for a channel this connection is subscribed to with one."""

    channel: str
    token: str


class PingRequest(Request):
    pass


class MarkReadRequest(Request):
    """This user has read `channel` up to `offset` (positions only move forward)."""

    channel: str
    offset: int


class ReadPositionsRequest(Request):
    channels: list[str]


class RpcRequest(Request):
    """A call the application's rpc hook answers."""

    method: str
    data: Raw = Raw(b"null")


REQUEST_TYPES: dict[str, type[Request]] = {
    "connect": ConnectRequest,
    "subscribe": SubscribeRequest,
    "unsubscribe": UnsubscribeRequest,
    "publish": PublishRequest,
    "history": HistoryRequest,
    "presence": PresenceRequest,
    "presence_stats": PresenceRequest,
    "send": SendRequest,
    "refresh": RefreshRequest,
    "sub_refresh": SubRefreshRequest,
    "ping": PingRequest,
    "mark_read": MarkReadRequest,
    "read_positions": ReadPositionsRequest,
    "rpc": RpcRequest,
}
# One decoder per request type, built once: `msgspec.json.decode(..., type=)` costs ~4x a
# prebuilt Decoder's call (it looks the type up each time).
_REQUEST_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    method: msgspec.json.Decoder(request_type) for method, request_type in REQUEST_TYPES.items()
}


@dataclass(slots=True)
class Command:
    """One decoded command. `request` is None when its parameters failed validation."""

    id: int
    method: str
    request: Request | None
    error: CommandError | None = None


# ---- replies and pushes (server -> client) -------------------------------------------------


class Reply(Struct, omit_defaults=True):
    pass


NULL = Raw(b"null")


class ClientInfo(Struct, omit_defaults=True):
    """Who published or joined: user id ("" when anonymous), connection id, token `info` claim."""

    user: str
    client: str
    info: Raw = NULL
    chan_info: Raw = NULL  # what the subscribe hook said about this subscriber in this channel


class Publication(Struct, omit_defaults=True):
    data: Raw
    offset: int | None = None
    info: ClientInfo | None = None
    time: int | None = None  # when the server accepted it: milliseconds since the Unix epoch


class ConnectResult(Reply):
    client: str
    version: str
    ping: float | None = None
    expires: bool = False
    ttl: int | None = None
    subs: list[str] | None = None  # server-side subscriptions: a `subscribe` push follows for each
    refreshed_by_server: bool = False  # the expiry came from the connect hook: its refresh hook extends it


class SubscribeResult(Reply):
    recoverable: bool = False
    epoch: str | None = None
    offset: int | None = None
    was_recovering: bool | None = None
    recovered: bool | None = None
    publications: list[Publication] | None = None
    expires: bool = False  # subscribed with a subscription token that expires
    ttl: int | None = None  # in this many seconds (a sub_refresh push asks ahead of it)


class PublishResult(Reply):
    offset: int | None = None
    epoch: str | None = None


class HistoryResult(Reply):
    publications: list[Publication]
    epoch: str
    offset: int


class PresenceResult(Reply):
    clients: dict[str, ClientInfo]


class PresenceStatsResult(Reply):
    num_clients: int
    num_users: int


class RefreshResult(Reply):
    expires: bool = False
    ttl: int | None = None


class Empty(Reply):
    pass


class RpcResult(Reply):
    data: Raw = NULL


class MarkReadResult(Reply):
    offset: int


class ChannelReadState(Struct, omit_defaults=True):
    """A user's read state in one channel: read up to `read`, the channel at `offset`."""

    read: int
    offset: int
    unread: int
    seen: dict[str, int] | None = None  # member-named channels: how far each other member read


class ReadPositionsResult(Reply):
    channels: dict[str, ChannelReadState]


class ErrorBody(Struct):
    code: int
    message: str
    temporary: bool = False


class Disconnect(Struct):
    code: int
    reason: str
    reconnect: bool


class Message(Struct, omit_defaults=True):
    data: Raw
    info: ClientInfo | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Raw])
_id_decoder = msgspec.json.Decoder(int)
encode = _encoder.encode


def encode_reply(command_id: int, method: str, result: Reply) -> bytes:
    return b'{"id":%d,"%s":%s}' % (command_id, method.encode(), _encoder.encode(result))


def encode_error(command_id: int, error: CommandError) -> bytes:
    body = ErrorBody(code=int(error.code), message=error.message, temporary=error.temporary)
    return b'{"id":%d,"error":%s}' % (command_id, _encoder.encode(body))


def encode_publication_push(channel: str, publication: Publication) -> bytes:
    """Encoded once per publication and shared by every subscriber (the fan-out path)."""
    return b'{"push":{"channel":%s,"pub":%s}}' % (_encoder.encode(channel), _encoder.encode(publication))


def encode_publication_push_around_offset(
    channel: str, data: Raw, info: ClientInfo | None, time: int | None
) -> tuple[bytes, bytes]:
    """`encode_publication_push`'s frame split where the offset goes (head, tail), for a store
    that assigns the offset and publishes the frame in one step (see HistoryStore.announces)."""
    head = b'{"push":{"channel":%s,"pub":{"data":%s,"offset":' % (_encoder.encode(channel), _encoder.encode(data))
    frame = encode_publication_push(channel, Publication(data=data, offset=0, info=info, time=time))
    return head, frame[len(head) + 1 :]


def encode_join_push(channel: str, who: ClientInfo, kind: str = "join") -> bytes:
    return b'{"push":{"channel":%s,"%s":{"info":%s}}}' % (
        _encoder.encode(channel),
        kind.encode(),
        _encoder.encode(who),
    )


def encode_message_push(message: Message) -> bytes:
    return b'{"push":{"message":%s}}' % _encoder.encode(message)


def encode_refresh_push(ttl: int) -> bytes:
    """The server asks for a fresh token: the current one expires in `ttl` seconds."""
    return b'{"push":{"refresh":{"ttl":%d}}}' % ttl


def encode_sub_refresh_push(channel: str, ttl: int) -> bytes:
    """The server asks for a fresh subscription token: the channel's expires in `ttl` seconds."""
    return b'{"push":{"channel":%s,"sub_refresh":{"ttl":%d}}}' % (_encoder.encode(channel), ttl)


def encode_unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    """The server ended this subscription (its token expired); the connection stays."""
    return b'{"push":{"channel":%s,"unsubscribe":{"code":%d,"reason":%s}}}' % (
        _encoder.encode(channel),
        code,
        _encoder.encode(reason),
    )


def encode_subscribe_push(channel: str, result: SubscribeResult) -> bytes:
    """The server subscribed this connection to `channel` (server-side): its position, as a reply."""
    return b'{"push":{"channel":%s,"subscribe":%s}}' % (_encoder.encode(channel), _encoder.encode(result))


def encode_read_push(channel: str, user: str, offset: int) -> bytes:
    """`user` has read `channel` up to `offset` (to the user's other connections, and to the other
    members of a member-named channel)."""
    return b'{"push":{"channel":%s,"read":{"user":%s,"offset":%d}}}' % (
        _encoder.encode(channel),
        _encoder.encode(user),
        offset,
    )


def encode_disconnect_push(code: int, reason: str, reconnect: bool) -> bytes:
    return b'{"push":{"disconnect":%s}}' % _encoder.encode(Disconnect(code, reason, reconnect))


def validate_json(data: bytes) -> Raw:
    """Check that bytes are one JSON value (publication data from the HTTP API).

    Pretty-printed JSON is re-encoded compactly: a raw newline would split the frame.
    """
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, f"data is not valid JSON: {exc}") from None
    if b"\n" in data or b"\r" in data:
        data = _encoder.encode(value)
    return Raw(data)


def decode_frame(frame: bytes | str) -> list[Command]:
    """Split a frame into commands.

    Raises ProtocolError when a line is not a JSON object with a valid `id`, since there is no
    id to reply to. Bad parameters of an identified command come back as `Command.error` so the
    caller can answer that command and carry on.
    """
    if isinstance(frame, str):
        frame = frame.encode()
    if b"\n" not in frame and frame.strip():  # one command, the common case
        return [_decode_command(frame)]
    commands = []
    for line in frame.split(b"\n"):
        if line.strip():
            commands.append(_decode_command(line))
    if not commands:
        raise ProtocolError("empty frame")
    return commands


def _decode_command(line: bytes) -> Command:
    try:
        fields = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from None
    raw_id = fields.pop("id", None)
    command_id = _decode_id(raw_id)
    if len(fields) != 1:
        methods = ", ".join(sorted(fields)) or "none"
        error = CommandError(ErrorCode.BAD_REQUEST, f"a command has exactly one method field, got: {methods}")
        return Command(command_id, "", None, error)
    method, params = next(iter(fields.items()))
    decoder = _REQUEST_DECODERS.get(method)
    if decoder is None:
        return Command(command_id, method, None, CommandError(ErrorCode.METHOD_NOT_FOUND, f"unknown method {method!r}"))
    try:
        request = decoder.decode(params)
    except msgspec.ValidationError as exc:
        return Command(command_id, method, None, CommandError(ErrorCode.BAD_REQUEST, f"{method}: {exc}"))
    except msgspec.DecodeError as exc:  # pragma: no cover - the outer decode already parsed it
        raise ProtocolError(str(exc)) from None
    return Command(command_id, method, request)


def _decode_id(raw_id: Raw | None) -> int:
    if raw_id is None:
        raise ProtocolError("command without an id")
    try:
        value: Any = _id_decoder.decode(raw_id)
    except msgspec.ValidationError:
        raise ProtocolError("command id must be an integer") from None
    if not 1 <= value <= MAX_COMMAND_ID:
        raise ProtocolError(f"command id must be between 1 and {MAX_COMMAND_ID}")
    return int(value)
