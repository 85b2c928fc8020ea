"""Plain counters the core keeps for metrics: no Prometheus here, the transport exports them.

Increments sit on paths that run once per publication or per command, never once per
delivery: fan-out adds `subscribers x frame size` in one step.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

# Seconds: from 0.1 ms (an in-memory command) to 5 s (a stuck backend).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    """Cumulative-bucket histogram in the Prometheus sense, without the dependency."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        total = 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            yield bound, total


@dataclass
class Stats:
    """What happened since start, by namespace, reason, limit or method."""

    messages_in: Counter[str] = field(default_factory=Counter)  # publications accepted, by namespace
    bytes_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)  # deliveries queued, by namespace
    bytes_out: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # deliveries not made, by reason
    limit_hits: Counter[str] = field(default_factory=Counter)
    slow_consumer_disconnects: int = 0
    # HTTP-streaming command POSTs by how they reached their stream: "local" or "broker" (another node)
    stream_messages: Counter[str] = field(default_factory=Counter)
    command_latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    broker_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    broker_errors: int = 0
    # A broker that lost its subscriptions and got them back, by reason; gaps history could not fill
    broker_resubscribes: Counter[str] = field(default_factory=Counter)
    broker_gaps_unfilled: int = 0
    hook_latency: dict[str, LatencyHistogram] = field(default_factory=dict)  # by hook
    hook_errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (hook, kind)
    # Publications per channel since the admin sampler last looked (it swaps this out).
    channel_publications: Counter[str] = field(default_factory=Counter)

    def observe_hook(self, hook: str, seconds: float) -> None:
        histogram = self.hook_latency.get(hook)
        if histogram is None:
            histogram = self.hook_latency[hook] = LatencyHistogram()
        histogram.observe(seconds)

    def observe_command(self, method: str, seconds: float) -> None:
        histogram = self.command_latency.get(method)
        if histogram is None:
            histogram = self.command_latency[method] = LatencyHistogram()
        histogram.observe(seconds)
