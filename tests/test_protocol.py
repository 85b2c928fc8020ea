"""Frame decoding: what closes the connection and what becomes an error reply."""

import pytest
from msgspec import Raw

from hubbub import protocol
from hubbub.errors import ErrorCode, ProtocolError


@pytest.mark.parametrize("command_id", [1, 42, protocol.MAX_COMMAND_ID])
def test_command_ids_up_to_the_largest_exact_json_integer_decode(command_id: int) -> None:
    (command,) = protocol.decode_frame(b'{"id":%d,"ping":{}}' % command_id)
    assert command.id == command_id and command.method == "ping" and command.error is None


def test_several_commands_share_one_frame() -> None:
    commands = protocol.decode_frame('{"id":1,"ping":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n')
    assert [(c.id, c.method) for c in commands] == [(1, "ping"), (2, "subscribe")]


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2]",
        '{"ping":{}}',
        '{"id":"1","ping":{}}',
        '{"id":0,"ping":{}}',
        '{"id":-1,"ping":{}}',
        '{"id":1.5,"ping":{}}',
        '{"id":true,"ping":{}}',
        '{"id":9007199254740992,"ping":{}}',
        "\n\n",
        "  ",
    ],
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


@pytest.mark.parametrize(
    ("data", "info", "time"),
    [
        (b"1", None, None),
        (b'{"offset":-1,"text":"x"}', protocol.ClientInfo(user="u", client="c"), 1_700_000_000_000),
        (b'"\\u00e9"', None, 5),
        (b"[]", protocol.ClientInfo(user="", client="c"), None),
    ],
)
@pytest.mark.parametrize("offset", [1, 10, 123456789])
def test_a_push_split_around_its_offset_joins_into_the_whole_push(
    data: bytes, info: protocol.ClientInfo | None, time: int | None, offset: int
) -> None:
    """The Redis append script joins head + offset + tail: it must be the frame hubbub sends."""
    head, tail = protocol.encode_publication_push_around_offset("room:é", Raw(data), info, time)
    whole = protocol.encode_publication_push(
        "room:é", protocol.Publication(data=Raw(data), offset=offset, info=info, time=time)
    )
    assert head + b"%d" % offset + tail == whole
