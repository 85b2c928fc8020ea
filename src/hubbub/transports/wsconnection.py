"""One WebSocket connection: an asyncio Protocol around `websockets`' sans-I/O `ServerProtocol`.

After the upgrade (handshake.py), `websockets` owns RFC 6455 wherever it is more than the common
case: frame parsing (masking, opcodes, control-frame rules, max size across fragments: close
1009), permessage-deflate and the close handshake. The common case does without it: whole small
data frames, pings and pongs are read by frame_reader.py, and data frames, pings and pongs are
written as bytes (frames.py). So the protocol (about 1.4 KiB and 9 objects the garbage collector
tracks) is made only when a connection first needs it (a close, a fragment, a malformed frame,
compression), OPEN and at a frame boundary, and most connections never have one. This module does
the I/O its asyncio server used to do, with less per connection (docs/benchmarks.md: handshakes/s
and idle memory): no handler task, no assembler futures; a task exists only while a connection
has commands to run.

What it adds on top of the sans-I/O core, as `websockets.asyncio` did: a handshake timeout,
message reassembly with fail-fast UTF-8 checks (close 1007), inbound flow control (stop reading
while 16 messages wait), a read hold on peers who provoke writes they never read (ping floods),
write flow control for the outbox, pings with pong tracking, and a close timeout.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from http import HTTPStatus
from typing import Any, Final, Protocol

from websockets.extensions.base import ServerExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from hubbub.core.outbox import DirectSink
from hubbub.errors import DisconnectCode
from hubbub.transports.frame_reader import FrameReader
from hubbub.transports.frames import OP_BINARY, OP_PING, OP_PONG, OP_TEXT, control_frame, data_frame
from hubbub.transports.handshake import (
    HEAD_END,
    HandshakeError,
    SelectSubprotocol,
    UpgradeRequest,
    accept_upgrade,
    error_response,
    parse_head,
)

log = logging.getLogger("hubbub.websocket")

Message = str | bytes
WRITE_LIMIT_HIGH: Final = 32 * 1024  # transport pauses writing above this (websockets' default)
WRITE_LIMIT_LOW: Final = WRITE_LIMIT_HIGH // 4
MAX_PENDING_PINGS: Final = 16  # unanswered pings remembered per connection; the oldest is forgotten
HOLD_QUEUE: Final = 1  # reasons to stop reading: bit flags
HOLD_UNREAD: Final = 2


class MessageHandler(Protocol):
    """What runs an open connection's messages (a hubbub session, or the test echo)."""

    async def handle(self, message: Message) -> None: ...

    async def closed(self) -> None: ...


class HttpExchange(Protocol):
    """A plain HTTP request served past its head (http_exchange.py): a request body to read, or a
    response streamed for as long as the client stays (SSE, HTTP streaming)."""

    def start(self, connection: WebSocketConnection, body: bytes) -> None:
        """The head is parsed; `body` holds the bytes that came after it."""
        ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None:
        """The transport is gone; call `connection.exchange_done()` once cleaned up."""
        ...

    def close(self, code: int, reason: str) -> None:
        """End the exchange as a WebSocket would close with `code` (drain: 1001)."""
        ...

    def keepalive(self) -> None:
        """The keepalive's tick (ping_interval): write something so proxies keep the stream."""
        ...


class ConnectionEvents(Protocol):
    """What the endpoint decides for each connection."""

    def process_request(
        self, connection: WebSocketConnection, request: UpgradeRequest
    ) -> Response | HttpExchange | None: ...

    def opened(self, connection: WebSocketConnection, request: UpgradeRequest) -> MessageHandler: ...


class Phase(Enum):
    """Where a connection is in its life; `_gone` alone takes it out of the registry.

    HANDSHAKE -> OPEN (the upgrade succeeded; a handler takes messages) -> CLOSING (the transport
    is gone; the worker finishes the inbox, then the handler's `closed`) -> GONE. A connection
    lost during the handshake goes from HANDSHAKE to GONE at once. A plain HTTP request served
    past its head goes HANDSHAKE -> EXCHANGE -> CLOSING (the exchange cleans up) -> GONE.
    """

    HANDSHAKE = "handshake"
    OPEN = "open"
    EXCHANGE = "exchange"
    CLOSING = "closing"
    GONE = "gone"


class ConnectionOptions:
    """Per-server settings every connection shares (one object, not one copy per connection)."""

    __slots__ = (
        "close_timeout",
        "extensions",
        "handshake_timeout",
        "max_head_bytes",
        "max_queued_messages",
        "max_size",
        "max_unread_bytes",
        "resume_queued_messages",
        "select_subprotocol",
        "server_header",
    )

    def __init__(
        self,
        *,
        max_size: int | None,
        handshake_timeout: float | None,
        max_unread_bytes: int | None,
        max_head_bytes: int,
        close_timeout: float | None,
        max_queued_messages: int,
        extensions: Sequence[ServerExtensionFactory] | None,
        select_subprotocol: SelectSubprotocol | None,
        server_header: str = "hubbub",
    ) -> None:
        """Every value comes from Settings (transports/websocket.py); none has a default here."""
        self.select_subprotocol = select_subprotocol
        self.max_size = max_size
        self.handshake_timeout = handshake_timeout
        self.max_unread_bytes = max_unread_bytes
        self.max_head_bytes = max_head_bytes
        self.close_timeout = close_timeout
        self.max_queued_messages = max(1, max_queued_messages)
        self.resume_queued_messages = self.max_queued_messages // 4  # read again once it drained this far
        self.extensions = extensions
        self.server_header = server_header


class WebSocketConnection(asyncio.Protocol):
    """The transport side of one client; the endpoint's `MessageHandler` does the rest."""

    __slots__ = (
        "_accepted",
        "_close_timer",
        "_eof_seen",
        "_fragments",
        "_handler",
        "_head",
        "_inbox",
        "_loop",
        "_read_holds",
        "_reader",
        "_registry",
        "_subprotocol",
        "_text_decoder",
        "_timer",
        "_worker",
        "_writable_callbacks",
        "_writes_frames",
        "direct_sink",
        "events",
        "exchange",
        "options",
        "paused",
        "phase",
        "pings",
        "protocol",
        "remote_address",
        "transport",
    )

    def __init__(
        self,
        registry: ConnectionRegistry,
        events: ConnectionEvents,
        options: ConnectionOptions,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        # The loop that serves this connection: `asyncio.get_running_loop()` costs a `getpid`
        # system call on Python 3.11, and a handshake would make three of them.
        self._loop = loop
        self._registry = registry
        self.events = events
        self.options = options
        self.protocol: ServerProtocol | None = None  # made on first need after the upgrade (_open_protocol)
        self._accepted = False  # the upgrade was answered with 101
        self._eof_seen = False  # the peer's EOF came while no protocol existed (eof_received)
        self._subprotocol: Subprotocol | None = None
        self._head: bytearray | None = bytearray()
        self.transport: asyncio.Transport | None = None
        self.remote_address: Any = None
        self.paused = False  # the transport asked us to stop writing
        # The protocol is OPEN, so data frames may be written raw (the sinks' check per write:
        # an attribute here instead of the protocol's property). Set where the state can change;
        # `writes_frames` also keeps the direct sink's copy (`DirectSink.accepting`) current.
        self._writes_frames = False
        self.direct_sink: DirectSink | None = None
        self.pings: dict[bytes, asyncio.Future[None]] | None = None
        self._handler: MessageHandler | None = None
        self._inbox: deque[Message] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._fragments: list[Message] | None = None
        self._text_decoder: codecs.IncrementalDecoder | None = None
        self._writable_callbacks: list[Callable[[], None]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._read_holds = 0
        self._reader: FrameReader | None = None
        self.exchange: HttpExchange | None = None
        self.phase = Phase.HANDSHAKE

    # What the endpoint and sessions use.

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def _lost(self) -> bool:
        """The transport is gone (the peer, the network or we closed it)."""
        return self.phase is Phase.CLOSING or self.phase is Phase.GONE

    @property
    def _ended(self) -> bool:
        """Nothing more comes in: the transport is gone or the peer's EOF came."""
        return self._lost or self._eof_seen

    @property
    def writes_frames(self) -> bool:
        return self._writes_frames

    @writes_frames.setter
    def writes_frames(self, value: bool) -> None:
        self._writes_frames = value
        if self.direct_sink is not None:
            self.direct_sink.accepting = value

    @property
    def state(self) -> State:
        protocol = self.protocol
        if protocol is not None:
            return protocol.state
        if self._ended:
            return State.CLOSED
        return State.OPEN if self._accepted else State.CONNECTING

    @property
    def extensions(self) -> list[Any]:
        """The extensions negotiated in the upgrade (permessage-deflate, or none)."""
        protocol = self.protocol
        return protocol.extensions if protocol is not None else []

    @property
    def close_code(self) -> int | None:
        """As websockets reports it: None until closed, 1006 when closed without a close frame."""
        protocol = self.protocol
        if protocol is not None:
            return protocol.close_code
        return 1006 if self._closed_without_protocol else None

    @property
    def close_reason(self) -> str | None:
        protocol = self.protocol
        if protocol is not None:
            return protocol.close_reason
        return "" if self._closed_without_protocol else None

    @property
    def _closed_without_protocol(self) -> bool:
        return self._ended and self._accepted

    @property
    def handler(self) -> MessageHandler | None:
        """What runs the open connection's messages (None before the upgrade)."""
        return self._handler

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    def respond(self, status: HTTPStatus, text: str) -> Response:
        """A plain-text HTTP answer instead of the upgrade (for `process_request`)."""
        return error_response(HandshakeError(status, text.rstrip("\n")))

    def flush(self) -> None:
        """Write what the sans-I/O protocol has queued; an empty chunk means "send EOF"."""
        transport = self.transport
        protocol = self.protocol
        if transport is None or protocol is None:
            return
        try:
            for data in protocol.data_to_send():
                if data:
                    self._transport_write(transport, data)
                elif transport.can_write_eof():
                    transport.write_eof()
                else:  # TLS cannot half-close
                    transport.close()
        except Exception as exc:  # a transport closing under us (uvloop raises): connection_lost follows
            log.debug("write to %s failed: %s", self.remote_address, exc)
        if self._close_timer is None and self.options.close_timeout is not None and protocol.close_expected():
            self._close_timer = self._loop.call_later(self.options.close_timeout, self.abort)

    def send_message(self, message: Message) -> None:
        """One message, through the protocol when there is one (compressed when negotiated);
        no-op unless open."""
        protocol = self.protocol
        if protocol is None:
            if self.writes_frames:
                if isinstance(message, str):
                    self._write(data_frame(OP_TEXT, message.encode()))
                else:
                    self._write(data_frame(OP_BINARY, message))
            return
        if protocol.state is not State.OPEN:
            return
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(message)
        self.flush()

    def ping(self, data: bytes) -> asyncio.Future[None] | None:
        """Send a ping; the future completes when its pong (or a later one) arrives."""
        protocol = self.protocol
        if self.transport is None or self.state is not State.OPEN:
            return None
        if self.pings is None:
            self.pings = {}
        if data in self.pings:
            return None
        if len(self.pings) >= MAX_PENDING_PINGS:  # a peer that never answers (no ping_timeout set)
            self.pings.pop(next(iter(self.pings))).cancel()
        pong: asyncio.Future[None] = self._loop.create_future()
        self.pings[data] = pong
        if protocol is None:
            self._write(control_frame(OP_PING, data))
        else:
            protocol.send_ping(data)
            self.flush()
        return pong

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the peer gets `close_timeout` seconds to answer."""
        if self.exchange is not None:
            self.exchange.close(code, reason)
        elif self.state is State.OPEN:
            self._open_protocol().send_close(code, reason)
            self.writes_frames = False
            self.flush()
        elif self.protocol is None:
            self.abort()

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): close frame, then close TCP at once."""
        if self.state is State.OPEN:
            self._open_protocol()
        protocol = self.protocol
        if protocol is None:
            self.abort()
            return
        protocol.fail(code, reason)
        self.writes_frames = False
        self.flush()

    def abort(self) -> None:
        self.writes_frames = False
        if self.transport is not None:
            self.transport.abort()

    def request_done(self) -> None:
        """An exchange has its whole request: the handshake timeout no longer applies."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def end_response(self) -> None:
        """Close once the buffered response is written; a peer that never reads it is dropped
        after `close_timeout` (its buffer must not live on)."""
        transport = self.transport
        if transport is None or self._lost:
            return
        transport.close()
        if self._close_timer is None and self.options.close_timeout is not None:
            self._close_timer = self._loop.call_later(self.options.close_timeout, self.abort)

    def exchange_done(self) -> None:
        """The exchange cleaned up after its transport went: the connection is gone."""
        if self.phase is Phase.CLOSING:
            self._gone()

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call back once the transport takes writes again (or the connection is gone)."""
        if not self.paused or self._lost:
            self._loop.call_soon(callback)
            return
        if self._writable_callbacks is None:
            self._writable_callbacks = []
        self._writable_callbacks.append(callback)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.transport = stream
        stream.set_write_buffer_limits(WRITE_LIMIT_HIGH, WRITE_LIMIT_LOW)
        self.remote_address = transport.get_extra_info("peername")
        self._registry.add(self)
        if self.options.handshake_timeout is not None:
            self._timer = self._loop.call_later(self.options.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.data_received(data)
            return
        if not self._accepted:
            data = self._handshake_data(data)
            if not self._accepted or not data:
                return
        reader = self._reader
        if reader is None:
            reader = self._reader = FrameReader()
        try:
            reader.feed(
                data, self.options.max_size, self._takes_simple_frames, self._deliver, self._control, self._parse
            )
        except UnicodeDecodeError as exc:  # a text frame the reader read (parsed ones fail in _data_frame)
            self.fail(1007, f"{exc.reason} at position {exc.start}")
        self.flush()
        transport = self.transport
        if (
            transport is not None
            and not self._read_holds & HOLD_UNREAD
            and self.options.max_unread_bytes is not None
            and transport.get_write_buffer_size() > self.options.max_unread_bytes
        ):
            self._hold_reading(HOLD_UNREAD)

    def _takes_simple_frames(self) -> bool:
        """Whether a whole unfragmented data frame, ping or pong may skip the parser now
        (frame_reader.py)."""
        if self._handler is None:
            return False
        protocol = self.protocol
        if protocol is None:
            return not self._ended
        return protocol.state is State.OPEN and protocol.current_size is None and not protocol.extensions

    def _control(self, opcode: int, payload: bytes) -> None:
        """A ping or pong frame_reader.py read: a pong settles pings, a ping is answered."""
        if opcode == OP_PONG:
            self._pong(payload)
        elif self.writes_frames:  # a ping, answered with its payload (RFC 6455 section 5.5.2)
            self._write(control_frame(OP_PONG, payload))

    def _open_protocol(self) -> ServerProtocol:
        """websockets' protocol, made now if this connection had none yet: OPEN, with nothing
        read or written half-way (frame_reader.py hands it frames at their boundaries)."""
        protocol = self.protocol
        if protocol is None:
            protocol = self.protocol = _sans_io(self.options, None)
            protocol.subprotocol = self._subprotocol
            if self._eof_seen:  # closed as the peer's EOF left it; nothing is sent after EOF
                protocol.receive_eof()
                protocol.data_to_send()
        return protocol

    def _write(self, frame: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            self._transport_write(transport, frame)
        except Exception as exc:  # a transport closing under us (uvloop raises): connection_lost follows
            log.debug("write to %s failed: %s", self.remote_address, exc)

    def _transport_write(self, transport: asyncio.Transport, data: bytes) -> None:
        """Every write of this connection to its transport: it may leave bytes in the transport's
        buffer, so the direct sink may no longer take the buffer for empty (transports/sink.py).
        tests/transports/test_direct_writes.py checks no other code here writes to the transport."""
        sink = self.direct_sink
        if sink is not None:
            sink.transport_empty = False
        transport.write(data)

    def _parse(self, data: bytes) -> None:
        protocol = self._open_protocol()
        protocol.receive_data(data)
        self.writes_frames = protocol.state is State.OPEN  # a close frame, or a protocol error
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame_received(event)

    def eof_received(self) -> bool | None:
        protocol = self.protocol
        if protocol is None:
            # Nothing half-read or negotiated needs websockets' protocol, so none is made to
            # report the end (a reconnect storm is mostly these): the state reads CLOSED with code
            # 1006, as websockets reports it, and the transport's close sends our FIN.
            self._eof_seen = self._accepted
            self.writes_frames = False
            return None
        protocol.receive_eof()
        self.writes_frames = False
        self.flush()
        return None  # let the transport close: a WebSocket never writes after the peer's EOF

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._release_reading(HOLD_UNREAD)
        self._call_writable_callbacks()

    def connection_lost(self, exc: Exception | None) -> None:
        had_handler = self.phase is Phase.OPEN
        had_exchange = self.phase is Phase.EXCHANGE
        self.phase = Phase.CLOSING
        self._head = None
        self.writes_frames = False
        if self.protocol is not None:
            self.protocol.receive_eof()  # idempotent; the protocol is CLOSED after it
        for timer in (self._timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._close_timer = None
        if self.pings:
            for pong in self.pings.values():
                pong.cancel()
            self.pings = None
        self.paused = False
        self._call_writable_callbacks()
        if had_exchange:
            assert self.exchange is not None
            self.exchange.connection_lost()  # it calls exchange_done
        elif not had_handler:
            self._gone()
        elif self._worker is None:
            self._worker = self._loop.create_task(self._run_inbox())
        # else: the running worker finishes the inbox, then closes the handler

    def _gone(self) -> None:
        """The end: out of the registry (shutdown waits for it to be empty). Called exactly once."""
        self.phase = Phase.GONE
        self._handler = None
        self.exchange = None
        self._registry.discard(self)

    # Internals

    def _handshake_expired(self) -> None:
        self._timer = None
        if not self._accepted:
            log.debug("handshake from %s timed out", self.remote_address)
            self.abort()

    def _handshake_data(self, data: bytes) -> bytes:
        """Collect the upgrade request; answer it once complete. Returns bytes that followed it."""
        head = self._head
        if head is None:  # answered with an HTTP error: ignore the rest
            return b""
        head += data
        # Search only the new bytes (and the 3 before them): a request trickled byte by byte must
        # not cost a scan of the whole buffer per byte.
        end = head.find(HEAD_END, max(0, len(head) - len(data) - len(HEAD_END) + 1))
        limit = self.options.max_head_bytes
        if end < 0 or end > limit:
            if len(head) > limit:
                self._refuse(
                    error_response(HandshakeError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"))
                )
            return b""
        rest = bytes(head[end + len(HEAD_END) :])
        self._head = None
        try:
            request = parse_head(bytes(head[:end]))
            response = self.events.process_request(self, request)
            if isinstance(response, Response):
                self._refuse(response)
                return b""
            if response is not None:
                self.exchange = response
                self.phase = Phase.EXCHANGE
                response.start(self, rest)
                return b""
            options = self.options
            # The protocol now only to negotiate an extension the client offers; without one, the
            # connection makes it when it first needs it (_open_protocol).
            protocol = (
                _sans_io(options, options.extensions)
                if options.extensions and "sec-websocket-extensions" in request.headers
                else None
            )
            answer, subprotocol = accept_upgrade(request, protocol, options.select_subprotocol, options.server_header)
        except HandshakeError as error:
            self._refuse(error_response(error))
            return b""
        except Exception:
            log.exception("handshake failed")
            self._refuse(error_response(HandshakeError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")))
            return b""
        assert self.transport is not None
        self._transport_write(self.transport, answer)
        if protocol is not None and protocol.extensions:
            protocol.subprotocol = subprotocol
            self.protocol = protocol
        self._subprotocol = subprotocol
        self._accepted = True
        self.writes_frames = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._handler = self.events.opened(self, request)
            self.phase = Phase.OPEN
        except Exception:
            log.exception("opening a connection failed")
            self.fail(DisconnectCode.INTERNAL, "internal error")
        return rest

    def _refuse(self, response: Response) -> None:
        """Answer with a plain HTTP response and close (nothing more is read)."""
        self._head = None
        response.headers["Server"] = self.options.server_header
        if "Connection" not in response.headers:
            response.headers["Connection"] = "close"
        if self.transport is not None:
            self._transport_write(self.transport, response.serialize())
            self.transport.close()

    def _frame_received(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self._data_frame(frame)
        elif opcode is Opcode.PONG:
            self._pong(bytes(frame.data))

    def _data_frame(self, frame: Frame) -> None:
        protocol = self.protocol
        assert protocol is not None
        if protocol.close_sent is not None and protocol.close_rcvd is None:
            return  # we are closing (or failed this connection): drop what the peer still sends
        opcode = frame.opcode
        try:
            if opcode is Opcode.TEXT:
                if frame.fin:
                    self._deliver(bytes(frame.data).decode())
                    return
                self._text_decoder = codecs.getincrementaldecoder("utf-8")()
                self._fragments = [self._text_decoder.decode(frame.data)]
            elif opcode is Opcode.BINARY:
                if frame.fin:
                    self._deliver(bytes(frame.data))
                    return
                self._text_decoder = None
                self._fragments = [bytes(frame.data)]
            else:  # continuation: the sans-I/O parser checked one is expected
                fragments = self._fragments
                if fragments is None:  # the message was already refused
                    return
                decoder = self._text_decoder
                fragments.append(
                    decoder.decode(frame.data, final=frame.fin) if decoder is not None else bytes(frame.data)
                )
                if frame.fin:
                    self._fragments = self._text_decoder = None
                    self._deliver("".join(fragments) if decoder is not None else b"".join(fragments))  # type: ignore[arg-type]
        except UnicodeDecodeError as exc:
            self._fragments = self._text_decoder = None
            self.fail(1007, f"{exc.reason} at position {exc.start}")

    def _deliver(self, message: Message) -> None:
        if self._handler is None:
            return
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(message)
        if len(self._inbox) >= self.options.max_queued_messages:
            self._hold_reading(HOLD_QUEUE)
        if self._worker is None:
            self._worker = self._loop.create_task(self._run_inbox())

    async def _run_inbox(self) -> None:
        """Runs the handler on queued messages in order; exists only while there are some."""
        handler = self._handler
        assert handler is not None
        inbox = self._inbox
        try:
            while inbox:
                message = inbox.popleft()
                if len(inbox) <= self.options.resume_queued_messages:
                    self._release_reading(HOLD_QUEUE)
                try:
                    await handler.handle(message)
                except Exception:
                    log.exception("handling a message failed")
                    self.fail(DisconnectCode.INTERNAL, "internal error")
                    inbox.clear()
        finally:
            self._worker = None
            if not inbox:  # an empty deque is 760 bytes: an idle connection keeps none
                self._inbox = None
        if self.phase is Phase.CLOSING:
            self._inbox = None
            try:
                await handler.closed()
            finally:
                self._gone()

    def _pong(self, data: bytes) -> None:
        """A pong acknowledges its ping and every earlier one (RFC 6455 allows skipping pongs)."""
        pings = self.pings
        if not pings or data not in pings:
            return
        for sent in list(pings):
            pong = pings.pop(sent)
            if not pong.done():
                pong.set_result(None)
            if sent == data:
                break

    def _hold_reading(self, reason: int) -> None:
        if not self._read_holds and self.transport is not None and not self._lost:
            self.transport.pause_reading()
        self._read_holds |= reason

    def _release_reading(self, reason: int) -> None:
        if not self._read_holds & reason:
            return
        self._read_holds &= ~reason
        if not self._read_holds and self.transport is not None and not self._lost:
            self.transport.resume_reading()

    def _call_writable_callbacks(self) -> None:
        callbacks, self._writable_callbacks = self._writable_callbacks, None
        for callback in callbacks or ():
            callback()


def _sans_io(options: ConnectionOptions, extensions: Sequence[ServerExtensionFactory] | None) -> ServerProtocol:
    """websockets' protocol for an upgraded connection: OPEN, the server's message size limit."""
    return ServerProtocol(extensions=extensions, state=State.OPEN, max_size=options.max_size, logger=log)


class ConnectionRegistry:
    """Every live connection of one listening server, for shutdown and the keepalive."""

    def __init__(self) -> None:
        self.connections: dict[WebSocketConnection, None] = {}  # insertion-ordered set
        self._empty: asyncio.Event | None = None

    def add(self, connection: WebSocketConnection) -> None:
        self.connections[connection] = None
        if self._empty is not None:
            self._empty.clear()

    def discard(self, connection: WebSocketConnection) -> None:
        self.connections.pop(connection, None)
        if not self.connections and self._empty is not None:
            self._empty.set()

    async def wait_empty(self) -> None:
        if not self.connections:
            return
        if self._empty is None:
            self._empty = asyncio.Event()
        await self._empty.wait()


class WebSocketServer:
    """The listening socket(s) and their connections; what `Server` shuts down."""

    def __init__(self, server: asyncio.Server, registry: ConnectionRegistry) -> None:
        self._server = server
        self._registry = registry

    @property
    def sockets(self) -> tuple[Any, ...]:
        server: Any = self._server  # typeshed says a tuple; uvloop's is a list, which compiled code refuses
        return tuple(server.sockets)

    @property
    def connections(self) -> list[WebSocketConnection]:
        return list(self._registry.connections)

    def close(self, code: int, reason: str) -> None:
        """Stop listening; close open connections with `code`, drop those mid-handshake."""
        self._server.close()
        for connection in list(self._registry.connections):
            connection.close(code, reason)

    async def wait_idle(self) -> None:
        """Until no connection is open (handshaking ones included)."""
        await self._registry.wait_empty()

    async def wait_closed(self) -> None:
        await self._registry.wait_empty()
        await self._server.wait_closed()
