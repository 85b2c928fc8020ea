"""The user-facing docs keep up with the code: every setting and every code is documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hubbub import config
from hubbub.errors import DisconnectCode, ErrorCode

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_in_the_configuration_page() -> None:
    text = (DOCS / "configuration.md").read_text()
    for field in dataclasses.fields(config.Settings):
        assert f"`{field.name}`" in text, field.name
    for field in dataclasses.fields(config.NamespaceOptions):
        assert f"`{field.name}`" in text, field.name


def test_every_error_and_close_code_is_in_the_protocol_page() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in ErrorCode:
        assert f"| {code.value} |" in text, code
    for close in DisconnectCode:
        assert f"| {close.value} |" in text, close


def test_every_command_has_an_example() -> None:
    from hubbub.protocol import REQUEST_TYPES

    text = (DOCS / "protocol.md").read_text()
    for method in REQUEST_TYPES:
        assert f'"{method}":{{' in text, method
