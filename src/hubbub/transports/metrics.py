"""Prometheus exposition of the hub's counters, read at scrape time (nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hubbub.core.hub import Hub
from hubbub.core.stats import LatencyHistogram


def _histogram(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: LatencyHistogram) -> None:
    family.add_metric(labels, list(histogram.cumulative()), histogram.sum)


class HubCollector(Collector):
    """Turns Hub state and Stats into metric families on every scrape."""

    def __init__(self, hub: Hub, is_ready: Callable[[], bool]) -> None:
        self.hub = hub
        self.is_ready = is_ready

    def _counter(self, name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=[label])
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
        return family

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        stats = hub.stats
        counts = hub.counts()
        yield GaugeMetricFamily("hubbub_connections", "Connected sessions (after connect)", value=counts.connections)
        yield GaugeMetricFamily("hubbub_users", "Distinct users connected", value=counts.users)
        yield GaugeMetricFamily("hubbub_subscriptions", "Subscriptions on this node", value=counts.subscriptions)
        yield GaugeMetricFamily("hubbub_channels", "Channels with subscribers on this node", value=counts.channels)
        yield GaugeMetricFamily(
            "hubbub_history_publications", "Publications kept in history", value=hub.stored_publications
        )
        yield GaugeMetricFamily("hubbub_ready", "1 when the node accepts traffic", value=1 if self.is_ready() else 0)
        yield self._counter("hubbub_messages_in", "Publications accepted", "namespace", stats.messages_in)
        yield self._counter("hubbub_bytes_in", "Bytes of publication data accepted", "namespace", stats.bytes_in)
        yield self._counter("hubbub_messages_out", "Deliveries queued to subscribers", "namespace", stats.messages_out)
        yield self._counter("hubbub_bytes_out", "Bytes queued to subscribers", "namespace", stats.bytes_out)
        yield self._counter("hubbub_dropped_deliveries", "Deliveries not made", "reason", stats.dropped)
        yield self._counter("hubbub_limit_hits", "Requests refused by a limit", "limit", stats.limit_hits)
        yield CounterMetricFamily(
            "hubbub_slow_consumer_disconnects", "Connections cut as slow (3008)", value=stats.slow_consumer_disconnects
        )
        yield self._counter(
            "hubbub_stream_messages",
            "HTTP-streaming command POSTs, by how they reached their stream",
            "path",
            stats.stream_messages,
        )
        yield CounterMetricFamily("hubbub_broker_errors", "Broker publish failures", value=stats.broker_errors)
        yield self._counter(
            "hubbub_broker_resubscribes",
            "Broker subscriptions lost and restored, by reason",
            "reason",
            stats.broker_resubscribes,
        )
        yield CounterMetricFamily(
            "hubbub_broker_gaps_unfilled",
            "Channels whose missed publications history could not replay",
            value=stats.broker_gaps_unfilled,
        )
        commands = _histogram("hubbub_command_duration_seconds", "Time to handle a client command", ["method"])
        for method, histogram in sorted(stats.command_latency.items()):
            _add_histogram(commands, [method], histogram)
        yield commands
        broker = _histogram("hubbub_broker_publish_duration_seconds", "Time to hand a publication to the broker", [])
        _add_histogram(broker, [], stats.broker_latency)
        yield broker
        hooks = _histogram("hubbub_hook_duration_seconds", "Time an application hook took to answer", ["hook"])
        for hook, histogram in sorted(stats.hook_latency.items()):
            _add_histogram(hooks, [hook], histogram)
        yield hooks
        errors = CounterMetricFamily(
            "hubbub_hook_errors", "Application hook calls that failed", labels=["hook", "kind"]
        )
        for (hook, kind), count in sorted(stats.hook_errors.items()):
            errors.add_metric([hook, kind], count)
        yield errors


def metrics_registry(hub: Hub, is_ready: Callable[[], bool]) -> CollectorRegistry:
    """A registry of our own, so several servers in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, is_ready))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
