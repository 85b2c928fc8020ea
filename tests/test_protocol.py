"""Frame decoding: what closes the connection and what becomes an error reply."""

import pytest

from hubbub import protocol
from hubbub.errors import ErrorCode, ProtocolError


def test_several_commands_share_one_frame() -> None:
    commands = protocol.decode_frame('{"id":1,"ping":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n')
    assert [(c.id, c.method) for c in commands] == [(1, "ping"), (2, "subscribe")]


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '{"ping":{}}', '{"id":"1","ping":{}}', '{"id":0,"ping":{}}', '{"id":1.5,"ping":{}}', "\n\n"],
)
def test_frames_without_a_usable_id_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode_frame(frame)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ('{"id":1,"frobnicate":{}}', ErrorCode.METHOD_NOT_FOUND),
        ('{"id":1}', ErrorCode.BAD_REQUEST),
        ('{"id":1,"ping":{},"connect":{}}', ErrorCode.BAD_REQUEST),
        ('{"id":1,"subscribe":{}}', ErrorCode.BAD_REQUEST),
        ('{"id":1,"subscribe":{"channel":5}}', ErrorCode.BAD_REQUEST),
        ('{"id":1,"subscribe":{"channel":"a","since":{"offset":"x","epoch":"e"}}}', ErrorCode.BAD_REQUEST),
    ],
)
def test_bad_commands_with_an_id_become_error_replies(line: str, code: ErrorCode) -> None:
    (command,) = protocol.decode_frame(line)
    assert command.id == 1 and command.error is not None and command.error.code == code


def test_publication_data_stays_raw_json() -> None:
    (command,) = protocol.decode_frame('{"id":1,"publish":{"channel":"a","data":{"b": [1, 2.5]}}}')
    assert isinstance(command.request, protocol.PublishRequest)
    assert bytes(command.request.data) == b'{"b": [1, 2.5]}'


def test_pretty_printed_api_data_is_compacted_so_frames_stay_line_delimited() -> None:
    assert bytes(protocol.validate_json(b'{\n  "a": 1\n}')) == b'{"a":1}'
