"""The compiled build's socket write (`hubbub.transports._send.send_now`, C): what the direct
writes rely on, on real loopback TCP sockets. The pure build has no such module (its direct
writes use os.write): `make test-compiled` runs these, and they must not skip there."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hubbub.transports import sink

try:
    from hubbub.transports._send import send_now
except ImportError:  # the pure build
    if os.environ.get("EXPECT_COMPILED_HUBBUB") == "1":
        raise
    pytest.skip("the pure build has no C helper (make test-compiled runs this)", allow_module_level=True)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair, the writer non-blocking as an event loop leaves it."""
    listener = socket.create_server(("127.0.0.1", 0))
    writer = socket.create_connection(listener.getsockname())
    reader, _ = listener.accept()
    listener.close()
    writer.setblocking(False)
    reader.settimeout(10)
    try:
        yield writer, reader
    finally:
        writer.close()
        reader.close()


def received(reader: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = reader.recv(count - len(data))
        assert chunk, "the writer's side closed early"
        data += chunk
    return data


def test_the_compiled_direct_writes_use_it() -> None:
    assert sink.write_descriptor is send_now


def test_a_frame_goes_out_whole_and_its_length_comes_back(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    frame = b"\x81\x05hello"
    assert send_now(writer.fileno(), frame) == len(frame)
    assert received(reader, len(frame)) == frame
    for other in (bytearray(b"\x81\x01a"), memoryview(b"\x81\x01b")):  # any bytes-like object
        assert send_now(writer.fileno(), other) == 3  # type: ignore[arg-type]
        assert received(reader, 3) == bytes(other)


def test_a_full_socket_takes_part_then_nothing_and_the_bytes_stay_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A partial write returns what went; a full buffer returns 0 (os.write raises
    BlockingIOError there), not an exception and never a wait."""
    writer, reader = pair
    chunk = bytes(range(256)) * 256  # 64 KiB, a recognisable sequence
    counts = []
    for _ in range(10_000):  # bounded: a loopback socket fills within a few MiB
        counts.append(send_now(writer.fileno(), chunk))
        if counts[-1] == 0:
            break
    assert counts[-1] == 0, "the socket never filled"
    total = sum(counts)
    expected = b"".join(chunk[:count] for count in counts)  # what each call said it sent, in order
    assert received(reader, total) == expected


def test_a_closed_peer_is_an_oserror_not_a_signal(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    reader.close()
    with pytest.raises(OSError) as raised:
        for _ in range(100):  # the first write after the reset may still be taken
            send_now(writer.fileno(), b"\x81\x01x")
    assert raised.value.errno in (errno.EPIPE, errno.ECONNRESET)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((-1, b"x"), ValueError),
        ((2**40, b"x"), ValueError),
        (("3", b"x"), TypeError),
        ((3, "text"), TypeError),
        ((3,), TypeError),
        ((3, b"x", 0), TypeError),
    ],
)
def test_bad_arguments_raise_and_write_nothing(arguments: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        send_now(*arguments)


def test_a_descriptor_that_is_not_open_is_ebadf() -> None:
    descriptor = os.open(os.devnull, os.O_RDONLY)
    os.close(descriptor)  # a number no file holds now
    with pytest.raises(OSError) as raised:
        send_now(descriptor, b"x")
    assert raised.value.errno == errno.EBADF
