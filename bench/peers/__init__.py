"""Naive Python hubs a user would write instead of hubbub: the peers of `python -m bench suite`.

Each speaks the same tiny text protocol so one load generator drives them all:
`sub CHANNEL` is answered with `ok CHANNEL`; `pub CHANNEL PAYLOAD` sends PAYLOAD to every
subscriber of CHANNEL, one frame per message, as the libraries' own examples do.
Run one with `python -m bench.peers.NAME PORT [--uvloop]`; it prints `listening` when ready.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable


def loop_factory(argv: list[str]) -> Callable[[], asyncio.AbstractEventLoop]:
    if "--uvloop" in argv:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def port_from(argv: list[str]) -> int:
    return int(argv[1]) if len(argv) > 1 else 0


def announce(name: str, port: int) -> None:
    print(f"{name} listening on 127.0.0.1:{port}", flush=True)
    sys.stdout.flush()
