"""Centrifugo's client protocol (v2), the part both its encodings share (JSON and Protobuf).

Centrifugo's SDKs (centrifuge-js, -python, -swift, -java, -dart, -go) connect to hubbub at
`centrifugo_path`: its model is hubbub's own (commands with ids, replies, pushes, offsets and
epochs), so each of its commands becomes one hubbub command for the session, and each message
hubbub's session sends becomes at most a few Centrifugo messages. This module holds that
mapping; centrifugo_json.py and centrifugo_protobuf.py only encode and decode.

What differs, and what the mapping does about it (docs/centrifugo-sdks.md):
- Client info is `conn_info` there (`info` here); presence is `presence` (`clients` here).
- The SDKs refresh tokens on their own timer, at the `ttl` the server gives: hubbub gives them
  the moment it would ask (`refresh_before` ahead of expiry), and drops its own refresh asks.
- `send` has no id and gets no reply: it goes to the application's rpc hook as method "send".
- Unsubscribe codes below 2500 end a subscription, 2500 and above resubscribe; a server-made
  subscription comes with its missed publications as pushes after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Raw, Struct

from hubbub import protocol
from hubbub.errors import CommandError, DisconnectCode, ErrorCode, ProtocolError

SUBPROTOCOL_PROTOBUF = "centrifuge-protobuf"  # Centrifugo's JSON protocol offers no subprotocol
MAX_ID = 2**32 - 1  # Centrifugo's command ids are uint32
SEND_ID = MAX_ID + 1  # the hubbub command a `send` becomes: its reply is not for the client
SEND_METHOD = "send"  # the rpc method name a `send` reaches the application's rpc hook with
PING = b"{}"  # an internal message meaning "the server's ping": an empty reply on the wire
UNSUBSCRIBED = 2000  # unsubscribe push: the server ended the subscription (the SDK stops)
RESUBSCRIBE = 2500  # unsubscribe push: subscribe again (the SDK gets a fresh token first)

# hubbub close codes whose number means something else to the SDKs: 3014 makes centrifuge-js
# drop every subscription's position, which a temporarily absent connect hook must not cause.
CLOSE_CODES = {int(DisconnectCode.APPLICATION_UNAVAILABLE): int(DisconnectCode.INTERNAL)}


def close_code(code: int) -> int:
    """The close (or disconnect push) code a Centrifugo SDK reads as hubbub means `code`."""
    return CLOSE_CODES.get(code, code)


# ---- client -> server: one Centrifugo command as a hubbub command --------------------------


DataOf = Callable[[Any], Raw]  # a request's `data` field as JSON (refusing what is not JSON)


def command_for(command_id: int, method: str, request: Any, data_of: DataOf) -> protocol.Command | None:
    """The hubbub command for one Centrifugo command (None: nothing to run, a client's pong).

    `request` has Centrifugo's field names; `data_of` turns its `data` into JSON.
    """
    if not 0 <= command_id <= MAX_ID:
        raise ProtocolError(f"command id must be between 0 and {MAX_ID}")
    if not method:
        if command_id == 0:
            return None  # an empty command: the client's pong
        return protocol.Command(
            command_id, "", None, CommandError(ErrorCode.METHOD_NOT_FOUND, "a command needs a method hubbub knows")
        )
    if method == "send":  # asynchronous, no id: the application's rpc hook, its answer dropped
        command_id = SEND_ID
    elif command_id == 0:
        raise ProtocolError(f"{method} without an id")
    try:
        build = _BUILDERS[method]
        hubbub_method, built = build(request, data_of)
    except CommandError as error:
        return protocol.Command(command_id, method, None, error)
    return protocol.Command(command_id, hubbub_method, built)


def _text(value: str) -> str | None:
    return value or None


def _connect(request: Any, data_of: DataOf) -> tuple[str, protocol.Request]:
    subs = {
        channel: protocol.StreamPosition(offset=int(sub.offset), epoch=sub.epoch)
        for channel, sub in request.subs.items()
        if sub.recover
    }
    return "connect", protocol.ConnectRequest(
        token=_text(request.token),
        name=_text(request.name),
        version=_text(request.version),
        data=data_of(request.data),
        subs=subs or None,
    )


def _subscribe(request: Any, data_of: DataOf) -> tuple[str, protocol.Request]:
    since = protocol.StreamPosition(offset=int(request.offset), epoch=request.epoch) if request.recover else None
    return "subscribe", protocol.SubscribeRequest(
        channel=_channel(request), since=since, token=_text(request.token), data=data_of(request.data)
    )


def _channel(request: Any) -> str:
    if not request.channel:
        raise CommandError(ErrorCode.BAD_REQUEST, "channel required")
    return str(request.channel)


def _history(request: Any, _: DataOf) -> tuple[str, protocol.Request]:
    since = request.since
    position = protocol.StreamPosition(offset=int(since.offset), epoch=since.epoch) if _has(request, "since") else None
    limit = int(request.limit)
    return "history", protocol.HistoryRequest(
        channel=_channel(request),
        since=position,
        # Centrifugo: 0 asks for no publications (only the position), below 0 for all of them.
        limit=None if limit < 0 else limit,
        reverse=bool(request.reverse),
    )


def _has(request: Any, field: str) -> bool:
    has_field = getattr(request, "HasField", None)
    return bool(has_field(field)) if has_field is not None else getattr(request, field) is not None


def _rpc(request: Any, data_of: DataOf) -> tuple[str, protocol.Request]:
    return "rpc", protocol.RpcRequest(method=request.method, data=data_of(request.data))


def _send(request: Any, data_of: DataOf) -> tuple[str, protocol.Request]:
    return "rpc", protocol.RpcRequest(method=SEND_METHOD, data=data_of(request.data))


_BUILDERS: dict[str, Callable[[Any, DataOf], tuple[str, protocol.Request]]] = {
    "connect": _connect,
    "subscribe": _subscribe,
    "unsubscribe": lambda r, _: ("unsubscribe", protocol.UnsubscribeRequest(channel=_channel(r))),
    "publish": lambda r, data_of: ("publish", protocol.PublishRequest(channel=_channel(r), data=data_of(r.data))),
    "presence": lambda r, _: ("presence", protocol.PresenceRequest(channel=_channel(r))),
    "presence_stats": lambda r, _: ("presence_stats", protocol.PresenceRequest(channel=_channel(r))),
    "history": _history,
    "ping": lambda r, _: ("ping", protocol.PingRequest()),
    "send": _send,
    "rpc": _rpc,
    "refresh": lambda r, _: ("refresh", protocol.RefreshRequest(token=r.token)),
    "sub_refresh": lambda r, _: ("sub_refresh", protocol.SubRefreshRequest(channel=_channel(r), token=r.token)),
}
METHODS = tuple(_BUILDERS)  # in Centrifugo's field order: the first one set is the command


# ---- server -> client: hubbub's messages in Centrifugo's shape ------------------------------
# Decoded with the data fields kept as raw JSON bytes; the result is plain dicts whose leaves
# are Raw (JSON data), str, int or bool, which either encoder writes out.


class _Info(Struct):
    user: str = ""
    client: str = ""
    info: Raw | None = None
    chan_info: Raw | None = None


class _Publication(Struct):
    data: Raw
    offset: int = 0
    info: _Info | None = None
    time: int = 0


class _Who(Struct):
    info: _Info


class _Message(Struct):
    data: Raw


class _Unsubscribe(Struct):
    code: int = 0
    reason: str = ""


class _Disconnect(Struct):
    code: int
    reason: str = ""
    reconnect: bool = False


class _Subscribed(Struct):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    was_recovering: bool = False
    recovered: bool = False
    publications: list[_Publication] = []
    expires: bool = False
    ttl: int = 0


class _Push(Struct):
    channel: str = ""
    pub: _Publication | None = None
    join: _Who | None = None
    leave: _Who | None = None
    message: _Message | None = None
    unsubscribe: _Unsubscribe | None = None
    subscribe: _Subscribed | None = None
    disconnect: _Disconnect | None = None
    # refresh, sub_refresh and read are hubbub's own: the SDKs keep their own refresh timers.


class _Connected(Struct):
    client: str
    version: str
    ping: float | None = None
    expires: bool = False
    ttl: int = 0
    refreshed_by_server: bool = False


class _History(Struct):
    publications: list[_Publication]
    epoch: str
    offset: int


class _Presence(Struct):
    clients: dict[str, _Info]


class _Expiry(Struct):
    expires: bool = False
    ttl: int = 0


class _Error(Struct):
    code: int
    message: str
    temporary: bool = False


_decode_line = msgspec.json.Decoder(dict[str, Raw]).decode
_RESULTS: dict[str, msgspec.json.Decoder[Any]] = {
    "connect": msgspec.json.Decoder(_Connected),
    "subscribe": msgspec.json.Decoder(_Subscribed),
    "history": msgspec.json.Decoder(_History),
    "presence": msgspec.json.Decoder(_Presence),
    "refresh": msgspec.json.Decoder(_Expiry),
    "sub_refresh": msgspec.json.Decoder(_Expiry),
    "rpc": msgspec.json.Decoder(dict[str, Raw]),
    "presence_stats": msgspec.json.Decoder(dict[str, int]),
}
_decode_push = msgspec.json.Decoder(_Push).decode
_decode_error = msgspec.json.Decoder(_Error).decode
_decode_id = msgspec.json.Decoder(int).decode  # per reply: a prebuilt decoder is ~4x faster than decode(type=)

Shaped = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Shaper:
    """Turns hubbub's internal messages into Centrifugo's, with the server's timing settings."""

    refresh_before: float

    def messages(self, payload: bytes) -> list[Shaped]:
        """Every Centrifugo message for one outbox payload (internal messages joined by "\\n")."""
        shaped: list[Shaped] = []
        for line in payload.split(b"\n") if b"\n" in payload else (payload,):
            self._line(line, shaped)
        return shaped

    def _line(self, line: bytes, out: list[Shaped]) -> None:
        if line == PING:
            out.append({})
            return
        fields = _decode_line(line)
        push = fields.get("push")
        if push is not None:
            self._push(_decode_push(push), out)
            return
        command_id = _decode_id(fields.pop("id"))
        if command_id > MAX_ID:  # a `send`'s rpc: nobody asked for its answer
            return
        error = fields.get("error")
        if error is not None:
            body = _decode_error(error)
            reply: Shaped = {"code": body.code, "message": body.message}
            if body.temporary:
                reply["temporary"] = True
            out.append({"id": command_id, "error": reply})
            return
        method, raw = next(iter(fields.items()))
        decoder = _RESULTS.get(method)
        result = self._result(method, decoder.decode(raw) if decoder is not None else None)
        out.append({"id": command_id, method: result})

    def _result(self, method: str, result: Any) -> Shaped:
        if isinstance(result, _Connected):
            connected: Shaped = {"client": result.client, "version": result.version}
            # An expiry the connect hook set is the refresh hook's to extend: the SDK, which would
            # ask its getToken (absent, as it connected without a token), must not try.
            if result.expires and not result.refreshed_by_server:
                connected.update(expires=True, ttl=self.ttl(result.ttl))
            if result.ping:
                connected.update(ping=max(1, round(result.ping)), pong=False)  # the WebSocket pong does
            return connected
        if isinstance(result, _Subscribed):
            return self._subscribed(result, with_publications=True)
        if isinstance(result, _History):
            history: Shaped = {"epoch": result.epoch, "offset": result.offset}
            if result.publications:
                history["publications"] = [_publication(p) for p in result.publications]
            return history
        if isinstance(result, _Presence):
            return {"presence": {client: _info(info) for client, info in result.clients.items()}}
        if isinstance(result, _Expiry):
            return {"expires": True, "ttl": self.ttl(result.ttl)} if result.expires else {}
        if method == "rpc":
            data = result.get("data")
            return {"data": data} if data is not None else {}
        if method == "presence_stats":
            return {"num_clients": result.get("num_clients", 0), "num_users": result.get("num_users", 0)}
        return {}  # unsubscribe, publish, ping: nothing the SDKs read

    def _subscribed(self, result: _Subscribed, *, with_publications: bool) -> Shaped:
        shaped: Shaped = {}
        if result.recoverable:
            shaped.update(recoverable=True, positioned=True, epoch=result.epoch, offset=result.offset)
        if result.was_recovering:
            shaped["was_recovering"] = True
        if result.recovered:
            shaped["recovered"] = True
        if with_publications and result.publications:
            shaped["publications"] = [_publication(p) for p in result.publications]
        if result.expires:
            shaped.update(expires=True, ttl=self.ttl(result.ttl))
        return shaped

    def _push(self, push: _Push, out: list[Shaped]) -> None:
        channel = push.channel
        if push.pub is not None:
            out.append({"push": {"channel": channel, "pub": _publication(push.pub)}})
        elif push.join is not None:
            out.append({"push": {"channel": channel, "join": {"info": _info(push.join.info)}}})
        elif push.leave is not None:
            out.append({"push": {"channel": channel, "leave": {"info": _info(push.leave.info)}}})
        elif push.message is not None:
            out.append({"push": {"message": {"data": push.message.data}}})
        elif push.unsubscribe is not None:
            code = RESUBSCRIBE if push.unsubscribe.code == ErrorCode.TOKEN_EXPIRED else UNSUBSCRIBED
            out.append({"push": {"channel": channel, "unsubscribe": {"code": code, "reason": push.unsubscribe.reason}}})
        elif push.subscribe is not None:
            result = push.subscribe
            subscribed = self._subscribed(result, with_publications=False)
            subscribed.pop("was_recovering", None)
            subscribed.pop("recovered", None)
            out.append({"push": {"channel": channel, "subscribe": subscribed}})
            for publication in result.publications:  # what it missed, in order, after it
                out.append({"push": {"channel": channel, "pub": _publication(publication)}})
        elif push.disconnect is not None:
            down = push.disconnect
            disconnect = {"code": close_code(down.code), "reason": down.reason, "reconnect": down.reconnect}
            out.append({"push": {"disconnect": disconnect}})

    def ttl(self, remaining: int) -> int:
        """When an SDK should refresh a token that expires in `remaining` seconds: when hubbub
        would ask (refresh_before ahead, or halfway for short-lived tokens), never at expiry."""
        if remaining > 2 * self.refresh_before:
            return int(remaining - self.refresh_before)
        return max(1, remaining // 2) if remaining > 0 else 0


def _publication(publication: _Publication) -> Shaped:
    shaped: Shaped = {"data": publication.data}
    if publication.offset:
        shaped["offset"] = publication.offset
    if publication.info is not None:
        shaped["info"] = _info(publication.info)
    if publication.time:
        shaped["time"] = publication.time
    return shaped


def _info(info: _Info) -> Shaped:
    shaped: Shaped = {"user": info.user, "client": info.client}
    if info.info is not None and bytes(info.info) != b"null":
        shaped["conn_info"] = info.info
    if info.chan_info is not None and bytes(info.chan_info) != b"null":
        shaped["chan_info"] = info.chan_info
    return shaped
