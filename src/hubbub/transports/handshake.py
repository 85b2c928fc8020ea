"""The HTTP upgrade request (RFC 6455 section 4.2), parsed and answered in one pass.

`websockets`' sans-I/O handshake (a generator per line, a `Headers` multidict, a `Response`
object per answer) was more than half of a connect's server time; measured (docs/benchmarks.md)
this path takes handshakes/s past aiohttp's. It is strict, as `websockets` is: CRLF lines, token
header names, no body on an upgrade, no obs-fold, a bounded head (431 past `max_request_head_bytes`), and the
same answers for a bad upgrade (400, 405, 426 with `Sec-WebSocket-Version: 13`, 505). Header
grammar (Connection, Upgrade, subprotocol lists) and permessage-deflate negotiation still come
from `websockets`.
"""

from __future__ import annotations

import binascii
import email.utils
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Final, NoReturn

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.headers import parse_connection, parse_subprotocol, parse_upgrade
from websockets.http11 import Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

HEAD_END: Final = b"\r\n\r\n"
ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
TOKEN_TEXT: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
FIELD_VALUE: Final = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# Every field line at once (token name, colon, visible value; CRLF between lines): one regex
# call per request instead of two per line. A head it refuses goes line by line for the error.
FIELD_LINES: Final = re.compile(
    rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\x09\x20-\x7e\x80-\xff]*(?:\r\n[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\x09\x20-\x7e\x80-\xff]*)*"
)
# Fields that must come once: a repeat could make two parties read different values. Any other
# repeated field is joined into one comma-separated value (RFC 9110 section 5.3).
SINGLETON_FIELDS: Final = frozenset(
    {"host", "origin", "sec-websocket-key", "sec-websocket-version", "content-length", "authorization"}
)


class HandshakeError(Exception):
    """A request we answer with an HTTP error instead of an upgrade."""

    def __init__(self, status: HTTPStatus, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


class UpgradeRequest:
    """Request line and header fields (names lower-cased; repeated fields joined with ", ")."""

    __slots__ = ("headers", "method", "path", "version")

    def __init__(self, method: str, path: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers


def parse_head(head: bytes) -> UpgradeRequest:
    """Parse everything before the blank line; raise HandshakeError (400) on any malformation."""
    request_line_end = head.find(b"\r\n")
    if request_line_end >= 0 and not FIELD_LINES.fullmatch(head, request_line_end + 2):
        _refuse_field_lines(head.split(b"\r\n")[1:])
    # Checked: names are tokens (ASCII) and values visible octets, so one ISO-8859-1 decode of
    # the whole head gives what a decode per name and per value would (HTTP's field text).
    lines = head.decode("iso-8859-1").split("\r\n")
    try:
        method, path, version = lines[0].split(" ")
    except ValueError:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid HTTP request line") from None
    if not TOKEN_TEXT.fullmatch(method) or not path.startswith("/") or not path.isascii():
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid HTTP request line")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "unsupported protocol; expected HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            if name in SINGLETON_FIELDS:
                raise HandshakeError(HTTPStatus.BAD_REQUEST, f"duplicate {name} header")
            value = f"{headers[name]}, {value}"
        headers[name] = value
    return UpgradeRequest(method, path, version, headers)


def _refuse_field_lines(lines: list[bytes]) -> NoReturn:
    """The 400 for the first malformed field line (FIELD_LINES refused the head)."""
    for line in lines:
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(raw_name):
            raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid HTTP header line")
        if not FIELD_VALUE.fullmatch(raw_value.strip(b" \t")):
            raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid HTTP header value")
    raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid HTTP header line")  # pragma: no cover - a line fails above


SelectSubprotocol = Callable[[Sequence[Subprotocol]], Subprotocol | None]


def accept_upgrade(
    request: UpgradeRequest, protocol: ServerProtocol | None, select: SelectSubprotocol | None, server: str
) -> tuple[bytes, Subprotocol | None]:
    """Check the upgrade and negotiate; returns the whole 101 response and the chosen
    subprotocol, or raises HandshakeError.

    `protocol` (already OPEN), when given, negotiates extensions and receives those accepted;
    without one, none are."""
    if request.method != "GET":
        raise HandshakeError(HTTPStatus.METHOD_NOT_ALLOWED, "a WebSocket upgrade uses GET", [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise HandshakeError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "a WebSocket upgrade needs HTTP/1.1")
    headers = request.headers
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "a WebSocket upgrade request has no body")
    if not _has_token(parse_connection, headers.get("connection"), "upgrade") or not _has_token(
        parse_upgrade, headers.get("upgrade"), "websocket", only=True
    ):
        raise HandshakeError(
            HTTPStatus.UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: connect with a WebSocket client",
            [("Upgrade", "websocket")],
        )
    key = headers.get("sec-websocket-key")
    if key is None or _key_length(key) != 16:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "missing or invalid Sec-WebSocket-Key")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(
            HTTPStatus.UPGRADE_REQUIRED, "unsupported WebSocket version", [("Sec-WebSocket-Version", "13")]
        )
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        accept_value(key),
        b"\r\nDate: ",
        http_date().encode(),
    ]
    try:
        offered_extensions = headers.get("sec-websocket-extensions")
        if offered_extensions is not None and protocol is not None and protocol.available_extensions:
            answer, protocol.extensions = protocol.process_extensions(
                Headers([("Sec-WebSocket-Extensions", offered_extensions)])
            )
            if answer is not None:
                lines += [b"\r\nSec-WebSocket-Extensions: ", answer.encode()]
        offered = headers.get("sec-websocket-protocol")
        if select is None:
            chosen = None
        elif offered is None:
            chosen = select([])
        else:  # one plain token is the common case; lists go through the full grammar
            chosen = select([Subprotocol(offered)] if TOKEN_TEXT.fullmatch(offered) else parse_subprotocol(offered))
    except InvalidHandshake as exc:  # NegotiationError and malformed extension/subprotocol lists
        raise HandshakeError(HTTPStatus.BAD_REQUEST, f"WebSocket negotiation failed: {exc}") from None
    if chosen is not None:
        lines += [b"\r\nSec-WebSocket-Protocol: ", chosen.encode()]
    lines += [b"\r\nServer: ", server.encode(), b"\r\n\r\n"]
    return b"".join(lines), chosen


def _has_token(parse: Callable[[str], Sequence[str]], value: str | None, token: str, *, only: bool = False) -> bool:
    """Whether the comma-separated field holds `token`, any case (with `only`: and nothing else).
    One plain token, the common case, skips the list grammar."""
    if value is None:
        return False
    if len(value) == len(token) and value.lower() == token:
        return True
    try:
        values = [item.lower() for item in parse(value)]
    except InvalidHandshake:
        return False
    return values == [token] if only else token in values


def _key_length(key: str) -> int:
    try:
        return len(binascii.a2b_base64(key, strict_mode=True))
    except ValueError:  # binascii.Error, or a character outside ASCII
        return -1


def accept_value(key: str) -> bytes:
    """Sec-WebSocket-Accept for a checked key (RFC 6455 section 4.2.2), as `websockets`' accept_key
    computes it but without its Python-level base64 wrapper: this runs once per handshake."""
    return binascii.b2a_base64(hashlib.sha1(key.encode() + ACCEPT_GUID).digest(), newline=False)


def error_response(error: HandshakeError) -> Response:
    """A short plain-text answer that closes the connection."""
    body = (error.text + "\n").encode()
    headers = Headers(
        [
            ("Date", http_date()),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
            *error.headers,
        ]
    )
    return Response(error.status.value, error.status.phrase, headers, body)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted once per second rather than once per response."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]
