"""Counting deliveries and their latency (publication `ts` to parse time) for one group of readers."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Deliveries and latencies of one group of readers during one phase."""

    counting: bool = False
    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    replies: int = 0
    replies_expected: int = 0
    all_replied: asyncio.Event = field(default_factory=asyncio.Event)

    def expect_replies(self, more: int) -> None:
        self.replies_expected += more
        self.all_replied.clear()

    def on_text(self, frame: bytes) -> None:
        now = time.time() * 1000
        for line in frame.split(b"\n"):
            if line.startswith(b'{"id"'):
                self.replies += 1
                if self.replies >= self.replies_expected:
                    self.all_replied.set()
                continue
            if not self.counting:
                continue
            at = line.find(b'"ts":')
            if at < 0:
                continue
            self.delivered += 1
            end = line.find(b"}", at)
            self.latencies.append(now - float(line[at + 5 : end]))

    def summary(self, seconds: float) -> dict[str, float]:
        ordered = sorted(self.latencies) or [0.0]
        return {
            "delivered_per_s": self.delivered / seconds,
            "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max_ms": ordered[-1],
        }
