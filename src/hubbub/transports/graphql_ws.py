"""GraphQL over WebSocket, `graphql-transport-ws` (the `graphql-ws` library's PROTOCOL.md).

A connection runs a hubbub Session underneath: `connection_init` is its connect (token, connect
hook, limits), and each subscription operation names a channel that the session subscribes
(permissions, subscribe hook, recovery). What the session's outbox flushes comes back here as
`next` messages: each publication is executed once per group of operations that would get the
same result (graphql_events.py) and every subscriber of the group gets those bytes with its own
operation id. Queries and mutations are single-result operations (`next`, then `complete`).

Beyond the protocol, documented in docs/graphql.md: every `next` of a subscription carries
`extensions.hubbub` {channel, offset, epoch}; a subscribe that sends {offset, epoch} back in its
own `extensions.hubbub` gets exactly what it missed, from history, then live (or an `error` with
code UNRECOVERABLE_POSITION); a `ping` whose payload has a `token` refreshes the connection's
credentials, and the `pong` says until when.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgspec
from websockets.protocol import State as WsState

from hubbub import protocol
from hubbub.core.application import Application
from hubbub.core.auth import TokenVerifier
from hubbub.core.hub import Hub
from hubbub.core.session import UNSUBSCRIBED_BY_SERVER, Session
from hubbub.errors import CommandError, DisconnectCode, ErrorCode
from hubbub.graphql import Channel, GraphQLContext, Publish
from hubbub.graphql.documents import Document, DocumentCache, DocumentRefused, Limits
from hubbub.graphql.execution import ChannelRefused, execute, resolve_channel
from hubbub.transports.admission import Admission
from hubbub.transports.frames import text_frame
from hubbub.transports.graphql_events import (
    FAILED,
    Batch,
    EventCache,
    GroupKey,
    Publication,
    RefreshAsked,
    Reply,
    SharedResult,
    Unsubscribed,
)
from hubbub.transports.sink import close_reason
from hubbub.transports.wsconnection import Message, WebSocketConnection

log = logging.getLogger("hubbub.graphql")

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_decode_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_encode = msgspec.json.Encoder().encode
CONNECT_ID = 1
MAX_BACKLOG = 4096  # results of async resolvers one connection may wait for before it is cut (3008)
PING = text_frame(b'{"type":"ping"}')
PONG = text_frame(b'{"type":"pong"}')


class Close(IntEnum):
    """graphql-transport-ws close codes (PROTOCOL.md); hubbub's own 3000-3999 pass through."""

    BAD_REQUEST = 4400  # an invalid message
    UNAUTHORIZED = 4401  # subscribe before connection_ack
    FORBIDDEN = 4403  # connection_init refused, or credentials expired without a refresh
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    INIT_TIMEOUT = 4408  # no connection_init within graphql_init_timeout
    SUBSCRIBER_EXISTS = 4409  # a second subscribe with an id still running
    TOO_MANY_INIT = 4429  # a second connection_init


# The session closes with hubbub's codes; these mean "your credentials": 4403 in this protocol.
FORBIDDEN_CODES = {
    DisconnectCode.TOKEN_EXPIRED,
    DisconnectCode.INVALID_TOKEN,
    DisconnectCode.CONNECT_REFUSED,
    DisconnectCode.FORCE_DISCONNECT,
}


@dataclass(frozen=True, slots=True)
class GraphQLService:
    """What every GraphQL connection of a server shares: the schema, its document cache, and the
    in-process publish for resolvers (mutations)."""

    schema: Any
    documents: DocumentCache
    publish: Publish | None
    events: EventCache = field(default_factory=EventCache)


def service_for(schema: Any, hub: Hub, publish: Publish | None) -> GraphQLService:
    settings = hub.settings
    limits = Limits(
        max_document_bytes=settings.graphql_max_document_bytes,
        max_depth=settings.graphql_max_depth,
        max_aliases=settings.graphql_max_aliases,
        max_complexity=settings.graphql_max_complexity,
    )
    return GraphQLService(schema, DocumentCache(schema, limits, settings.graphql_document_cache_size), publish)


class Invalid(Exception):
    """A message this protocol does not allow: close 4400."""


@dataclass(eq=False, slots=True)
class Operation:
    """One running operation of one connection."""

    id: str
    id_json: bytes
    query: str
    document: Document
    operation_name: str | None
    variables: dict[str, Any] | None
    variables_key: bytes
    personal: bool
    channel: Channel | None = None
    epoch: str | None = None
    catching_up: list[Publication] | None = None  # live publications held while history is read
    # Positioned by its own history read at this offset, whose live copy may still be on its way
    # (a publisher appends, then broadcasts): live copies up to it are dropped until a newer one.
    settling_through: int | None = None
    task: asyncio.Task[None] | None = None
    done: bool = False


def graphql_error(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, **extra}}


def error_code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:  # an application's own refusal code (1000-1999)
        return "REFUSED"


class GraphQLConnection:
    """One graphql-transport-ws connection: the protocol's state machine over a hubbub Session,
    and the Session's sink (what its outbox flushes becomes `next` messages)."""

    __slots__ = (
        "_acknowledged",
        "_address",
        "_admission",
        "_app",
        "_backlog",
        "_by_channel",
        "_channel_lock",
        "_closed",
        "_connection",
        "_draining",
        "_hub",
        "_init_timer",
        "_next_id",
        "_operations",
        "_params",
        "_reply_handlers",
        "_service",
        "_verifier",
        "_waiters",
        "session",
    )

    def __init__(
        self,
        service: GraphQLService,
        hub: Hub,
        connection: WebSocketConnection,
        admission: Admission,
        address: str,
        verifier: TokenVerifier | None,
        app: Application | None,
    ) -> None:
        self._service = service
        self._hub = hub
        self._connection = connection
        self._admission = admission
        self._address = address
        self._verifier = verifier
        self._app = app  # the application's hooks, cut to this connection (None: it has none)
        self.session: Session | None = None
        self._acknowledged = False
        self._operations: dict[str, Operation] = {}
        self._by_channel: dict[str, list[Operation]] = {}
        self._waiters: dict[int, asyncio.Future[bytes | None]] = {}
        self._reply_handlers: dict[int, Callable[[bytes], None]] = {}  # run inline, in the flush
        self._channel_lock: asyncio.Lock | None = None  # made on first use: idle connections stay small
        self._next_id = CONNECT_ID
        self._params: dict[str, Any] | None = None
        self._backlog: deque[tuple[Operation, SharedResult] | bytes] | None = None  # behind async results
        self._draining: asyncio.Task[None] | None = None
        self._closed = False
        loop = asyncio.get_running_loop()
        self._init_timer: asyncio.TimerHandle | None = loop.call_later(
            hub.settings.graphql_init_timeout, self._init_expired
        )

    # ---- the protocol -------------------------------------------------------------------

    def _init_expired(self) -> None:
        self._init_timer = None
        if self.session is None:
            self._close(Close.INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle(self, message: Message) -> None:
        if self._closed:
            return
        try:
            if isinstance(message, bytes):
                raise Invalid("messages are JSON text")
            try:
                body = _decode_object(message)
            except (msgspec.DecodeError, RecursionError):  # msgspec bounds nesting depth
                raise Invalid("a message is a JSON object") from None
            kind = body.get("type")
            if kind == "connection_init":
                await self._on_init(body.get("payload"))
            elif kind == "ping":
                await self._on_ping(body.get("payload"))
            elif kind == "pong":
                return
            elif kind == "subscribe":
                await self._on_subscribe(body)
            elif kind == "complete":
                await self._on_complete(body)
            else:
                raise Invalid(f"unknown message type {kind!r}" if isinstance(kind, str) else "a message needs a type")
        except Invalid as invalid:
            self._close(Close.BAD_REQUEST, str(invalid))
        except CommandError as refused:  # the session's own limits (command rate): dropped
            log.debug("graphql message refused: %s", refused.message)

    async def _on_init(self, payload: Any) -> None:
        if self.session is not None:
            self._close(Close.TOO_MANY_INIT, "Too many initialisation requests")
            return
        if payload is not None and not isinstance(payload, dict):
            raise Invalid("connection_init's payload is an object")
        params = dict(payload or {})
        token = params.pop("token", None)
        for key in ("authorization", "Authorization"):
            value = params.pop(key, None)
            if isinstance(value, str) and token is None:
                token = value[7:].strip() if value[:7].lower() == "bearer " else value
        if token is not None and not isinstance(token, str):
            raise Invalid("token is a string")
        self._params = params
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        loop = asyncio.get_running_loop()
        self.session = Session(
            self._hub,
            self,
            verifier=self._verifier,
            call_later=loop.call_later,
            app=self._app,
            server_subscriptions=False,  # a publication with no operation of the client's has nowhere to go
        )
        connect: dict[str, Any] = {"name": "graphql", "data": params}
        if token:
            connect["token"] = token
        answer = await self._call("connect", connect)
        if answer is None:
            return
        error = _decode_raw_object(answer).get("error")
        if error is not None:
            body = msgspec.json.decode(error, type=protocol.ErrorBody)
            if body.temporary:  # come back later: the client retries 3xxx codes
                code = (
                    DisconnectCode.TOO_MANY_REQUESTS
                    if body.code == ErrorCode.TOO_MANY_REQUESTS
                    else DisconnectCode.APPLICATION_UNAVAILABLE
                )
                self._close(code, body.message)
            else:
                self._close(Close.FORBIDDEN, f"Forbidden: {body.message}")
            return
        self._acknowledged = True
        ack: dict[str, Any] = {"client": self.session.client_id}
        expires_at = self.session.credentials.expires_at
        if expires_at is not None:
            ack["expires_at"] = int(expires_at)
        self._write(text_frame(b'{"type":"connection_ack","payload":%s}' % _encode(ack)))

    async def _on_ping(self, payload: Any) -> None:
        if self.session is not None:
            self.session.charge_command()
        token = payload.get("token") if isinstance(payload, dict) else None
        if token is None:
            self._write(PONG if payload is None else text_frame(_encode({"type": "pong", "payload": payload})))
            return
        session = self.session
        if not self._acknowledged or session is None or not isinstance(token, str):
            raise Invalid("a refresh ping needs an acknowledged connection and a string token")
        answer = await self._call("refresh", {"token": token})
        if answer is None:
            return
        error = _decode_raw_object(answer).get("error")
        pong: dict[str, Any]
        if error is not None:
            body = msgspec.json.decode(error, type=protocol.ErrorBody)
            pong = {"error": {"code": error_code_name(body.code), "message": body.message}}
        else:
            expires_at = session.credentials.expires_at
            pong = {"expires_at": int(expires_at) if expires_at is not None else None}
        self._write(text_frame(_encode({"type": "pong", "payload": pong})))

    async def _on_subscribe(self, body: dict[str, Any]) -> None:
        operation_id = body.get("id")
        payload = body.get("payload")
        if not isinstance(operation_id, str) or not operation_id or not isinstance(payload, dict):
            raise Invalid("subscribe needs a string id and a payload object")
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        extensions = payload.get("extensions")
        if (
            not isinstance(query, str)
            or (variables is not None and not isinstance(variables, dict))
            or (operation_name is not None and not isinstance(operation_name, str))
            or (extensions is not None and not isinstance(extensions, dict))
        ):
            raise Invalid("subscribe's payload: query string, variables object, operationName string")
        since = _position(extensions)
        session = self.session
        if not self._acknowledged or session is None:
            self._close(Close.UNAUTHORIZED, "Unauthorized")
            return
        if operation_id in self._operations:
            self._close(Close.SUBSCRIBER_EXISTS, f"Subscriber for {operation_id} already exists")
            return
        id_json = _encode(operation_id)
        try:
            session.charge_command()
            if len(self._operations) >= self._hub.settings.graphql_max_operations:
                limit = self._hub.settings.graphql_max_operations
                raise DocumentRefused("TOO_MANY_OPERATIONS", f"at most {limit} operations per connection")
            document = self._service.documents.get(query)
            kind = document.operations.get(operation_name)
            if kind is None:
                raise DocumentRefused("GRAPHQL_VALIDATION_FAILED", f"no operation named {operation_name!r}")
        except DocumentRefused as refused:
            self._error(id_json, refused.errors)
            return
        except CommandError as refused:
            self._error(id_json, [graphql_error(refused.message, error_code_name(int(refused.code)))])
            return
        operation = Operation(
            operation_id,
            id_json,
            query,
            document,
            operation_name,
            variables,
            _encode(variables) if variables else b"",
            document.personal,
        )
        self._operations[operation_id] = operation
        if kind == "subscription":
            await self._start_subscription(operation, since)
        else:
            operation.task = asyncio.get_running_loop().create_task(self._run_single(operation))

    async def _on_complete(self, body: dict[str, Any]) -> None:
        operation_id = body.get("id")
        if not isinstance(operation_id, str):
            raise Invalid("complete needs a string id")
        if self.session is not None:
            self.session.charge_command()
        operation = self._operations.get(operation_id)
        if operation is not None:  # an unknown or finished id is ignored (PROTOCOL.md)
            await self._finish(operation)

    # ---- operations -----------------------------------------------------------------------

    def _context(self, channel: str | None, personal: bool) -> GraphQLContext:
        session = self.session
        assert session is not None
        if not personal:
            return GraphQLContext(channel=channel, publish=self._service.publish)
        credentials = session.credentials
        return GraphQLContext(credentials.user, credentials.info, self._params, channel, self._service.publish)

    async def _run_single(self, operation: Operation) -> None:
        """A query or mutation: one execution with the connection's own context, then complete."""
        try:
            outcome = execute(
                self._service.schema,
                operation.document.node,
                None,
                self._context(None, True),
                operation.variables,
                operation.operation_name,
            )
            payload = outcome if isinstance(outcome, bytes) else await outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("GraphQL operation %s failed", operation.id)
            payload = FAILED
        if operation.done:
            return
        self._write(text_frame(b'{"id":%s,"type":"next","payload":%s}' % (operation.id_json, payload)))
        self._complete(operation)

    async def _start_subscription(self, operation: Operation, since: protocol.StreamPosition | None) -> None:
        session = self.session
        assert session is not None
        try:
            async with asyncio.timeout(self._hub.settings.graphql_resolve_timeout):
                channel = await resolve_channel(
                    self._service.schema,
                    operation.document.node,
                    self._context(None, True),
                    operation.variables,
                    operation.operation_name,
                )
        except ChannelRefused as refused:
            self._fail(operation, refused.errors)
            return
        except TimeoutError:
            limit = self._hub.settings.graphql_resolve_timeout
            message = f"the subscription resolver named no channel within {limit:g} s"
            self._fail(operation, [graphql_error(message, "RESOLVER_TIMEOUT")])
            return
        if operation.done:
            return
        operation.channel = channel
        name = channel.name
        async with self._lock():  # against an unsubscribe of the same channel on its way
            if operation.done:
                return
            holders = self._by_channel.get(name)
            if holders or name in session.channels:  # followed already: catch this one up on its own
                self._by_channel.setdefault(name, []).append(operation)
                await self._catch_up(operation, name, since)
                return
            self._by_channel[name] = [operation]
            params: dict[str, Any] = {"channel": name}
            if since is not None:
                params["since"] = {"offset": since.offset, "epoch": since.epoch}
            await self._call("subscribe", params, on_reply=lambda line: self._subscribed(name, line))

    def _subscribed(self, channel: str, line: bytes) -> None:
        """The session's subscribe reply, read in the flush that carries it: the publications that
        follow it in the same payload already find the operation live."""
        operations = self._by_channel.get(channel, [])
        message = _decode_raw_object(line)
        error = message.get("error")
        if error is not None:
            body = msgspec.json.decode(error, type=protocol.ErrorBody)
            self._by_channel.pop(channel, None)
            for operation in operations:
                self._fail(operation, [graphql_error(body.message, error_code_name(body.code), channel=channel)])
            return
        result = msgspec.json.decode(message["subscribe"], type=protocol.SubscribeResult)
        for operation in list(operations):
            self._position_known(operation, channel, result)
        if not self._by_channel.get(channel):
            self._by_channel.pop(channel, None)
            self._hub.call_soon(lambda: self._unsubscribe_later(channel))

    def _position_known(self, operation: Operation, channel: str, result: protocol.SubscribeResult) -> None:
        """Recovered publications to the operation, or an error when the gap cannot be filled."""
        conflated = self._hub.namespace(channel).conflate  # those start from their newest value instead
        if result.was_recovering and result.recovered is False and not conflated:
            self._fail(
                operation,
                [
                    graphql_error(
                        "missed publications are no longer in history: reload, then subscribe without a position",
                        "UNRECOVERABLE_POSITION",
                        hubbub={"channel": channel, "offset": result.offset, "epoch": result.epoch},
                    )
                ],
            )
            return
        operation.epoch = result.epoch
        out: list[bytes] = []
        last = result.offset
        held = operation.catching_up or []
        operation.catching_up = None
        shared = self._service.events.results
        for recovered in result.publications or ():
            at, accepted = recovered.offset, recovered.time
            # Shared by every client recovering the same publications (a reconnect storm after a restart).
            results = shared.results_for((channel, at, accepted)) if at is not None and accepted is not None else None
            self._deliver(operation, Publication(channel, bytes(recovered.data), at, results), out)
            last = at
        for live in held:
            if live.offset is None or last is None or live.offset > last:
                self._deliver(operation, live, out)
        self._write(b"".join(out))

    async def _catch_up(self, operation: Operation, channel: str, since: protocol.StreamPosition | None) -> None:
        """A second operation on a channel already followed: its position from history, live
        publications held meanwhile (as the hub does for a subscriber)."""
        operation.catching_up = []
        hub = self._hub
        try:
            result, _ = await hub.positions.position(channel, hub.rules.resolve(channel), since)
        except CommandError as error:
            self._fail(operation, [graphql_error(error.message, error_code_name(int(error.code)), channel=channel)])
            return
        if not operation.done:
            self._position_known(operation, channel, result)
            operation.settling_through = result.offset

    def _deliver(self, operation: Operation, publication: Publication, out: list[bytes]) -> None:
        if operation.catching_up is not None:
            operation.catching_up.append(publication)
            return
        through = operation.settling_through
        if through is not None and publication.offset is not None:
            if publication.offset <= through:
                return
            operation.settling_through = None
        shared = publication.result(self._group_key(operation), lambda p: self._execute(operation, p))
        if self._backlog or shared.payload is None:
            backlog = self._held()
            if out:
                backlog.append(b"".join(out))
                out.clear()
            backlog.append((operation, shared))
            self._drain_later()
        else:
            out.append(shared.frame_for(operation.id_json))

    def _group_key(self, operation: Operation) -> GroupKey:
        """Who gets the same result: same document, operation, variables and epoch; and the same
        user when the document selects a personal field."""
        user = self.session.user if operation.personal and self.session is not None else None
        return (operation.query, operation.operation_name, operation.variables_key, user, operation.epoch)

    def _execute(self, operation: Operation, publication: Publication) -> bytes | Any:
        channel = operation.channel
        assert channel is not None
        data = publication.decoded()
        root = channel.convert(data) if channel.convert is not None else data
        extensions = None
        if publication.offset is not None:
            position = {"channel": publication.channel, "offset": publication.offset, "epoch": operation.epoch}
            extensions = {"hubbub": position}
        return execute(
            self._service.schema,
            operation.document.node,
            root,
            self._context(publication.channel, operation.personal),
            operation.variables,
            operation.operation_name,
            extensions,
        )

    def _fail(self, operation: Operation, errors: list[dict[str, Any]]) -> None:
        """An `error` ends the operation (no `complete` follows)."""
        if operation.done:
            return
        self._forget(operation)
        self._write(text_frame(b'{"id":%s,"type":"error","payload":%s}' % (operation.id_json, _encode(errors))))

    def _error(self, id_json: bytes, errors: list[dict[str, Any]]) -> None:
        self._write(text_frame(b'{"id":%s,"type":"error","payload":%s}' % (id_json, _encode(errors))))

    def _complete(self, operation: Operation) -> None:
        if operation.done:
            return
        self._forget(operation)
        self._write(text_frame(b'{"id":%s,"type":"complete"}' % operation.id_json))

    def _forget(self, operation: Operation) -> None:
        operation.done = True
        self._operations.pop(operation.id, None)
        channel = operation.channel
        if channel is None:
            return
        holders = self._by_channel.get(channel.name)
        if holders is not None and operation in holders:
            holders.remove(operation)
            if not holders:
                del self._by_channel[channel.name]
                self._hub.call_soon(lambda: self._unsubscribe_later(channel.name))

    async def _finish(self, operation: Operation) -> None:
        """The client completed it: nothing more goes out for its id."""
        if operation.task is not None:
            operation.task.cancel()
        self._forget(operation)

    def _unsubscribe_later(self, channel: str) -> None:
        session = self.session
        if session is None or self._by_channel.get(channel) or channel not in session.channels:
            return
        self._hub.spawn(self._unsubscribe(channel), f"graphql unsubscribe of {channel}")

    async def _unsubscribe(self, channel: str) -> None:
        async with self._lock():
            session = self.session
            if session is not None and not self._by_channel.get(channel) and channel in session.channels:
                await self._call("unsubscribe", {"channel": channel})

    # ---- the session's commands -------------------------------------------------------------

    async def _call(
        self, method: str, params: dict[str, Any], on_reply: Callable[[bytes], None] | None = None
    ) -> bytes | None:
        """Run one command through the session; its reply line (None if the connection went)."""
        session = self.session
        assert session is not None
        self._next_id += 1
        command_id = self._next_id
        waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if on_reply is not None:
            self._reply_handlers[command_id] = on_reply
        self._waiters[command_id] = waiter
        for command in protocol.decode_frame(protocol.encode({"id": command_id, method: params})):
            await session.handle(command)
        return await waiter

    # ---- the session's sink -------------------------------------------------------------------

    def write(self, payload: bytes) -> None:
        batch = self._service.events.batch_for(payload)
        if batch.channel is not None and not self._backlog and self._write_shared(batch, batch.channel):
            return
        out: list[bytes] = []
        for event in batch.events:
            if isinstance(event, Publication):
                for operation in self._by_channel.get(event.channel, ()):
                    self._deliver(operation, event, out)
            elif isinstance(event, Reply):
                if out:
                    self._write(b"".join(out))
                    out.clear()
                self._on_reply(event)
            elif isinstance(event, Unsubscribed):
                for operation in list(self._by_channel.get(event.channel, ())):
                    message = event.reason or "unsubscribed by the server"
                    code = "UNSUBSCRIBED" if event.code == UNSUBSCRIBED_BY_SERVER else error_code_name(event.code)
                    error = graphql_error(message, code, channel=event.channel)
                    if out:
                        self._write(b"".join(out))
                        out.clear()
                    self._fail(operation, [error])
            elif isinstance(event, RefreshAsked) and self._acknowledged:
                out.append(text_frame(b'{"type":"ping","payload":{"refresh":true,"expires_in":%d}}' % event.ttl))
        if out:
            self._write(b"".join(out))

    def _write_shared(self, batch: Batch, channel: str) -> bool:
        """The fan-out's common case, one live operation on the batch's channel: the frames every
        connection of its group gets, built by the first; False to go the general way."""
        operations = self._by_channel.get(channel)
        if operations is None:
            return True  # nothing here follows the channel: nothing to write
        if len(operations) != 1:
            return False
        operation = operations[0]
        if operation.catching_up is not None or operation.settling_through is not None:
            return False
        key = (self._group_key(operation), operation.id_json)
        data = batch.joined.get(key)
        if data is None:
            out: list[bytes] = []
            for event in batch.events:
                assert isinstance(event, Publication)
                self._deliver(operation, event, out)
            data = b"".join(out)
            if self._backlog:  # an async resolver: these bytes are this connection's alone
                self._write(data)
                return True
            batch.joined[key] = data
        self._write(data)
        return True

    def _on_reply(self, reply: Reply) -> None:
        handler = self._reply_handlers.pop(reply.id, None)
        if handler is not None:
            handler(reply.line)
        waiter = self._waiters.pop(reply.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply.line)

    def writable(self) -> bool:
        return not self._connection.paused

    def buffered_bytes(self) -> int:
        transport = self._connection.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def when_writable(self, callback: Any) -> None:
        self._connection.when_writable(callback)

    def close(self, code: int, reason: str) -> None:
        """The session ends the connection: credentials it no longer accepts are 4403 here."""
        self._release_waiters()  # its outbox is discarded: replies still owed will never come
        if code in FORBIDDEN_CODES:
            self._close(Close.FORBIDDEN, f"Forbidden: {reason}")
        else:
            self._close(code, reason)

    # ---- writing -------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Frames out now, behind any result still being executed asynchronously."""
        if not data:
            return
        if self._backlog:
            self._backlog.append(data)
            return
        self._raw_write(data)

    def _raw_write(self, data: bytes) -> None:
        connection = self._connection
        transport = connection.transport
        if transport is None or connection.state is not WsState.OPEN:
            return
        try:
            transport.write(data)
        except Exception as exc:  # a dead transport: connection_lost cleans up
            log.debug("write to %s failed: %s", connection.remote_address, exc)

    def _held(self) -> deque[tuple[Operation, SharedResult] | bytes]:
        if self._backlog is None:
            self._backlog = deque()
        return self._backlog

    def _lock(self) -> asyncio.Lock:
        if self._channel_lock is None:
            self._channel_lock = asyncio.Lock()
        return self._channel_lock

    def _drain_later(self) -> None:
        if len(self._held()) > MAX_BACKLOG and self.session is not None:  # resolvers slower than the feed
            self.session.disconnect(DisconnectCode.SLOW_CONSUMER, "slow consumer", notify=False)
            return
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Results of async resolvers, written in order as they complete."""
        try:
            backlog = self._held()
            while backlog and not self._closed:
                item = backlog[0]
                if isinstance(item, bytes):
                    backlog.popleft()
                    self._raw_write(item)
                    continue
                operation, shared = item
                if shared.payload is None and shared.waiting is not None:
                    await asyncio.wait([shared.waiting])
                backlog.popleft()
                if not operation.done:
                    self._raw_write(shared.frame_for(operation.id_json))
        finally:
            self._draining = None

    def keepalive(self) -> None:
        """A protocol ping beside the WebSocket ping: browsers' clients never see the latter."""
        if self._acknowledged and not self._closed:
            self._write(PING)

    def _release_waiters(self) -> None:
        """Wake every message waiting for a reply (None: there will be none), so the connection's
        worker finishes and the connection can go."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._reply_handlers.clear()

    def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._connection.close(code, close_reason(reason))

    async def closed(self) -> None:
        """The connection is gone: end the session, every operation and every wait."""
        self._closed = True
        if self._init_timer is not None:
            self._init_timer.cancel()
        for operation in list(self._operations.values()):
            if operation.task is not None:
                operation.task.cancel()
            operation.done = True
        self._release_waiters()
        self._backlog = None
        if self._draining is not None:
            self._draining.cancel()
        session = self.session
        try:
            if session is not None:
                connection = self._connection
                session.closed(connection.close_code, connection.close_reason or "")
                await self._hub.remove_session(session)
        finally:
            self._admission.release(self._address)


def _position(extensions: dict[str, Any] | None) -> protocol.StreamPosition | None:
    """`extensions.hubbub` {offset, epoch} of a subscribe: where a resumed subscription left off."""
    if not extensions:
        return None
    ours = extensions.get("hubbub")
    if not isinstance(ours, dict):
        return None
    offset = ours.get("offset")
    epoch = ours.get("epoch")
    if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(epoch, str) or offset < 0:
        raise Invalid("extensions.hubbub needs an integer offset and a string epoch")
    return protocol.StreamPosition(offset, epoch)


class SubprotocolRefused:
    """A /graphql upgrade that did not offer graphql-transport-ws: closed with 4406 at once."""

    def __init__(self, connection: WebSocketConnection, admission: Admission, address: str) -> None:
        self._admission = admission
        self._address = address
        connection.close(Close.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")

    async def handle(self, message: Message) -> None:
        return

    async def closed(self) -> None:
        self._admission.release(self._address)
