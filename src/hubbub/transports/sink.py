"""The raw-frame sink: what an Outbox writes a connection's frames through.

One prebuilt frame per connection per flush (FrameCache); the write path is chosen once per
connection at construction: raw frame, compressed frame, or through websockets' protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Final, cast

from websockets.extensions.permessage_deflate import PerMessageDeflate

from hubbub.core.outbox import UNLIMITED, DirectSink
from hubbub.transports.frames import FrameCache
from hubbub.transports.wsconnection import WebSocketConnection

log = logging.getLogger("hubbub.sink")

MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455 section 5.5: control frame payload <= 125 bytes


def close_reason(text: str) -> str:
    encoded = text.encode()[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore")


def socket_descriptor(transport: asyncio.BaseTransport) -> int:
    """The descriptor of the plain TCP socket under `transport`, or -1 where bytes written to
    it directly would be wrong (TLS: they must go through the TLS layer) or impossible."""
    if os.name != "posix" or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (AttributeError, OSError, ValueError):
        return -1


FD_UNKNOWN: Final = -2  # the descriptor is looked up at the first direct write, not per connection


def _descriptor_writer() -> Callable[[object, bytes], int]:
    """The compiled build's `_send.send_now`, one send(2) with the GIL held (os.write releases
    and re-takes it per call: _send.c says why); os.write in the pure build. Both raise OSError for
    a failed write; send_now returns 0 for a full buffer where os.write raises BlockingIOError."""
    try:
        from hubbub.transports._send import send_now
    except ImportError:  # pure Python
        return cast(Callable[[object, bytes], int], os.write)
    return send_now


# Writes bytes to the socket's descriptor, given as the int object the sink keeps (compiled, an
# int argument would be boxed anew per call: a descriptor above 256 is no cached small int).
# Final: compiled code reads it from a C static, not the module's dict, per delivery.
write_descriptor: Final = _descriptor_writer()


class WebSocketSink(DirectSink):
    """Writes outbox frames straight into one connection's transport.

    The flusher hands consecutive connections the same payload object, framed once by
    `FrameCache`, so a fan-out costs one `transport.write` per connection and nothing else. With
    permessage-deflate, frames under `compression_threshold` bytes go uncompressed (allowed per
    message, RFC 7692 section 6) and larger ones are compressed once per fan-out (the server never
    takes over context); a window zlib cannot make (8 bits) goes through the protocol instead.
    """

    __slots__ = (
        "_buffered",
        "_connection",
        "_deflate_bits",
        "_descriptor",
        "_fd",
        "_frames",
        "_protocol",
        "_threshold",
        "_transport",
    )

    def __init__(self, connection: WebSocketConnection, frames: FrameCache, compression_threshold: int = 0) -> None:
        assert connection.transport is not None, "a sink is made for an open connection"
        super().__init__()
        self._connection = connection
        connection.direct_sink = self  # it keeps `accepting` equal to its writes_frames
        self.accepting = connection.writes_frames
        self._protocol = connection.protocol  # made in the upgrade when an extension was negotiated
        self._transport = connection.transport  # one per connection, for its whole life
        self._frames = frames
        # Looked up at the first direct write (`_write_now_slowly`); the other two are set then
        # only if the socket takes direct writes: the descriptor's int object, and the transport's
        # get_write_buffer_size bound (a call through it skips a method lookup by name).
        self._fd = FD_UNKNOWN
        self._descriptor: object = None
        self._buffered: Callable[[], int] | None = None
        extensions = connection.extensions
        # Frames shorter than this go out raw and uncompressed: all of them without an extension.
        self._threshold = compression_threshold if extensions else UNLIMITED
        self._deflate_bits = 0
        if len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
            deflate = extensions[0]
            if deflate.local_no_context_takeover and deflate.local_max_window_bits >= 9:  # zlib cannot do 8
                self._deflate_bits = deflate.local_max_window_bits

    def write(self, payload: bytes) -> None:
        if not self._connection.writes_frames:  # closing: no data frame after the close frame
            return
        protocol = self._protocol
        try:
            if len(payload) < self._threshold:
                self._transport_write(self._frames.frame_for(payload))
            elif self._deflate_bits:
                self._transport_write(self._frames.deflated_frame_for(payload, self._deflate_bits))
            else:
                data = self._frames.data_for(payload)
                if not data:  # nothing for this protocol's client in it
                    return
                assert protocol is not None, "only a connection with an extension writes through it"
                if self._frames.binary:
                    protocol.send_binary(data)
                else:
                    protocol.send_text(data)
                self._connection.flush()
        except Exception as exc:  # a dead transport must not abort the fan-out
            log.debug("write to %s failed: %s", self._connection.remote_address, exc)

    def write_now(self, payload: bytes) -> int:
        """`writable`, `write` and `buffered_bytes` in one call, for the outbox's direct writes
        (one call per delivery instead of three): -1 when paused, else the bytes still buffered."""
        frames = self._frames
        buffered = self._buffered
        if self.accepting and buffered is not None and len(payload) < self._threshold:
            # The common case reads this object, the frame cache and at most the transport, not
            # the connection: `accepting` mirrors its writes_frames, an empty transport buffer
            # means it is not paused (a transport resumes its protocol before its buffer empties),
            # and after a complete direct write the buffer is known to be empty until the next
            # write through the transport (`transport_empty`: uvloop's buffer size lives in the
            # libuv handle, one more cache miss per delivery to ask).
            frame = frames.frame if payload is frames.payload else frames.frame_for(payload)
            if self.transport_empty or buffered() == 0:
                # Nothing buffered in the transport: write to the socket as the transport itself
                # would, minus its buffer bookkeeping (docs/architecture.md). The descriptor
                # stays open until connection_lost, which clears `accepting` first.
                try:
                    sent = write_descriptor(self._descriptor, frame)
                except OSError:  # full (EAGAIN), or broken: the transport's write meets it
                    sent = 0
                if sent == len(frame):
                    self.transport_empty = True
                    return 0
                frame = frame[sent:]  # the rest, in order, behind nothing
            elif self._connection.paused:
                return -1
            try:
                self._transport_write(frame)
            except Exception as exc:  # a dead transport must not abort the fan-out
                log.debug("write to %s failed: %s", self._connection.remote_address, exc)
            return buffered()
        return self._write_now_slowly(payload)

    def _write_now_slowly(self, payload: bytes) -> int:
        """`write_now` on its first call (the descriptor is looked up then: uvloop builds a socket
        object for it, ~5 us, which connections that never get a direct write do not pay), over
        TLS, for frames to compress, and while the connection is paused or closing."""
        connection = self._connection
        if connection.paused:
            return -1
        transport = self._transport
        if connection.writes_frames and len(payload) < self._threshold:
            if self._fd == FD_UNKNOWN:
                fd = self._fd = socket_descriptor(transport)
                if fd >= 0:
                    self._descriptor = fd
                    self._buffered = transport.get_write_buffer_size
                    return self.write_now(payload)
            try:
                self._transport_write(self._frames.frame_for(payload))
            except Exception as exc:  # a dead transport must not abort the fan-out
                log.debug("write to %s failed: %s", connection.remote_address, exc)
        else:
            self.write(payload)
        return transport.get_write_buffer_size()

    def _transport_write(self, frame: bytes) -> None:
        """Every write of this sink to the transport (bytes may stay in its buffer after it)."""
        self.transport_empty = False
        self._transport.write(frame)

    def writable(self) -> bool:
        return not self._connection.paused

    def buffered_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._connection.when_writable(callback)

    def close(self, code: int, reason: str) -> None:
        self._connection.close(code, close_reason(reason))
