"""Which modules a compiled build turns into C extensions with mypyc, and whether this one did.

The hot path (fan-out, outboxes, sessions, the WebSocket connection and its upgrade) costs
interpreter time per write and per handshake; compiled, the same source spends less than half
the interpreter time per delivery in process (docs/compiled.md). A pure-Python install runs the
very same modules, so both builds pass the same tests. `setup.py` reads `MODULES` with
COMPILE_HUBBUB=1; nothing here imports hubbub.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

MODULES = (
    "hubbub.core.channels",
    "hubbub.core.hooks",
    "hubbub.core.hub",
    "hubbub.core.ids",
    "hubbub.core.members",
    "hubbub.core.outbox",
    "hubbub.core.permissions",
    "hubbub.core.presence",
    "hubbub.core.publishing",
    "hubbub.core.ratelimit",
    "hubbub.core.recovery",
    "hubbub.core.session",
    "hubbub.core.stats",
    "hubbub.transports.admission",
    "hubbub.transports.centrifugo",
    "hubbub.transports.frame_reader",
    "hubbub.transports.frames",
    "hubbub.transports.handshake",
    "hubbub.transports.keepalive",
    "hubbub.transports.messages",
    "hubbub.transports.session_handler",
    "hubbub.transports.sink",
    "hubbub.transports.websocket",
    "hubbub.transports.wsconnection",
)

# Extensions written in C (each with a `.pyi` stub and no `.py`), built with the compiled ones:
# the pure build runs without them (the module importing one falls back to the standard library).
C_HELPERS = ("hubbub.transports._send",)


def compiled_modules() -> dict[str, bool]:
    """Each module of `MODULES` and `C_HELPERS` and whether it was loaded from a C extension."""
    extension = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    status = {}
    for name in (*MODULES, *C_HELPERS):
        spec = importlib.util.find_spec(name)
        status[name] = spec is not None and spec.origin is not None and spec.origin.endswith(extension)
    return status


def build_kind() -> str:
    """`compiled`, `pure Python` or `partly compiled` (a stale extension beside edited source)."""
    status = compiled_modules().values()
    if all(status):
        return "compiled"
    return "partly compiled" if any(status) else "pure Python"
