"""The raw frame fast path: byte-identical to what `websockets` would send, and guarded."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from hubbub.transports.websocket import FrameCache, text_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_the_library_serialisation(length: int) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) equals websockets' own unmasked frame."""
    payload = b"a" * length
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_frame_cache_frames_each_payload_object_once() -> None:
    """The same payload object gives the same frame object; another payload a new frame."""
    cache = FrameCache()
    payload = b"x" * 10
    frame = cache.frame_for(payload)
    assert cache.frame_for(payload) is frame
    other = cache.frame_for(b"y" * 10)
    assert other is not frame and other.endswith(b"y" * 10)
