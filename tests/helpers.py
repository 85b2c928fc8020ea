"""Test doubles for things that are not worth a socket: a recording sink, a manual clock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hubbub.backends.memory import MemoryBroker, MemoryHistory, MemoryPresence
from hubbub.config import NamespaceOptions, Settings
from hubbub.core.hub import Hub
from hubbub.core.session import Session


class FakeClock:
    """A clock the test moves by hand (`clock.now += 61`), for stores that take a `clock`."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ManualLoop:
    """call_soon / call_later driven by the test: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()  # tokens carry wall-clock exp
        self.ready: list[Callable[[], None]] = []
        self.timers: list[tuple[float, Callable[[], None], Timer]] = []

    def clock(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.ready.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        self.timers.append((self.now + delay, callback, timer))
        return timer

    def run_ready(self) -> None:
        while self.ready:
            ready, self.ready = self.ready, []
            for callback in ready:
                callback()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [entry for entry in self.timers if entry[0] <= self.now]
        self.timers = [entry for entry in self.timers if entry[0] > self.now]
        for _, callback, timer in sorted(due, key=lambda entry: entry[0]):
            if not timer.cancelled:
                callback()
        self.run_ready()


class Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RecordingSink:
    """Records frames and the close; `paused` simulates a transport above its high-water mark."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed_with: tuple[int, str] | None = None
        self.paused = False
        self.buffered = 0
        self._waiters: list[Callable[[], None]] = []

    def write(self, payload: bytes) -> None:
        assert not self.closed_with, "write after close"
        self.frames.append(payload)

    def writable(self) -> bool:
        return not self.paused

    def buffered_bytes(self) -> int:
        return self.buffered

    def when_writable(self, callback: Callable[[], None]) -> None:
        self._waiters.append(callback)

    def resume(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for frame in self.frames for line in frame.split(b"\n")]

    def pushes(self, kind: str = "pub") -> list[dict[str, Any]]:
        return [m["push"][kind] for m in self.messages() if "push" in m and kind in m["push"]]

    def reply(self, command_id: int) -> dict[str, Any]:
        replies = [m for m in self.messages() if m.get("id") == command_id]
        assert len(replies) == 1, f"expected one reply to {command_id}, got {replies}"
        return replies[0]


NAMESPACES = {
    "default": NamespaceOptions(history_size=1000, history_ttl=60, presence=True, publish="anyone"),
    "chat": NamespaceOptions(history_size=5, history_ttl=60, presence=True, join_leave=True, publish="anyone"),
    "live": NamespaceOptions(conflate=True, publish="anyone"),
    "feed": NamespaceOptions(),
}


def make_hub(loop: ManualLoop, **overrides: Any) -> Hub:
    settings = Settings(**{"namespaces": NAMESPACES, "history_path": None, **overrides})
    return Hub(settings, MemoryBroker(), MemoryHistory(clock=loop.clock), MemoryPresence(), call_soon=loop.call_soon)


def make_session(hub: Hub, loop: ManualLoop, verifier: Any = None) -> tuple[Session, RecordingSink]:
    sink = RecordingSink()
    session = Session(hub, sink, verifier=verifier, call_later=loop.call_later, clock=loop.clock)
    return session, sink


SECRET = "test-secret-of-at-least-32-bytes-for-hs256"
OTHER_SECRET = "another-secret-that-is-also-32-bytes-long"


def schema_validator(kind: str = "server_message") -> Any:
    """A validator for docs' JSON Schema: `server_message` or `client_message`."""
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("hubbub").joinpath("schemas/protocol.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{kind}"})
