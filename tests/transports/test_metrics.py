"""/metrics in Prometheus text format, parsed with the client library's own parser; health."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from hubbub.server import Server
from tests.conftest import OpenRaw, StartServer


async def scrape(http: aiohttp.ClientSession, server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"{server.api_url}/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_traffic_by_namespace(
    start_server: StartServer, open_raw: OpenRaw, http: aiohttp.ClientSession
) -> None:
    server = await start_server(publish_burst=3, publish_rate=0.01)
    alice, bob = await open_raw(server), await open_raw(server)
    for client in (alice, bob):
        await client.ok("subscribe", {"channel": "chat:room"})
    for i in range(3):
        await alice.ok("publish", {"channel": "chat:room", "data": {"i": i}})
    refused = await alice.call("publish", {"channel": "chat:room", "data": 4})
    assert refused["error"]["code"] == 111
    for _ in range(3):
        await bob.next_publication()
    assert server.hub is not None
    await server.hub.history_store.sync()  # the history size may lag one write batch
    metrics = await scrape(http, server)
    assert metrics[("hubbub_connections", ())] == 2
    assert metrics[("hubbub_subscriptions", ())] == 2
    assert metrics[("hubbub_channels", ())] == 1
    assert metrics[("hubbub_messages_in_total", (("namespace", "chat"),))] == 3
    assert metrics[("hubbub_bytes_in_total", (("namespace", "chat"),))] == 3 * len('{"i": 0}')  # raw, as sent
    # 3 publications x 2 subscribers, + bob's join reaching alice (join pushes are deliveries too)
    assert metrics[("hubbub_messages_out_total", (("namespace", "chat"),))] == 7
    assert metrics[("hubbub_bytes_out_total", (("namespace", "chat"),))] > 7 * len('{"i":0}')
    assert metrics[("hubbub_limit_hits_total", (("limit", "publications"),))] == 1
    assert metrics[("hubbub_history_publications", ())] == 3
    assert metrics[("hubbub_broker_publish_duration_seconds_count", ())] == 3 + 2  # + two join pushes
    assert metrics[("hubbub_command_duration_seconds_count", (("method", "publish"),))] == 4
    assert metrics[("hubbub_command_duration_seconds_bucket", (("le", "+Inf"), ("method", "subscribe")))] == 2
    assert metrics[("hubbub_ready", ())] == 1
    assert metrics[("hubbub_slow_consumer_disconnects_total", ())] == 0


async def test_health_live_and_ready(server: Server, http: aiohttp.ClientSession) -> None:
    for path in ("/health/live", "/health/ready", "/health"):
        async with http.get(server.api_url + path) as response:
            assert response.status == 200
    server.draining = True  # what SIGTERM sets first
    try:
        async with http.get(f"{server.api_url}/health/ready") as response:
            assert response.status == 503 and (await response.json())["status"] == "draining"
        async with http.get(f"{server.api_url}/health/live") as response:
            assert response.status == 200
        assert (await scrape(http, server))[("hubbub_ready", ())] == 0
    finally:
        server.draining = False
