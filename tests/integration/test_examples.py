"""docs/integration.md's recipes, run: FastAPI under uvicorn and an aiohttp app each publish from
a route handler to a subscribed client; Django publishes after commit. The docs show these files."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web

from hubbub import Client, Publisher, Server
from hubbub.config import Settings
from hubbub.testing import ServerThread
from tests.conftest import OpenRaw, StartServer
from tests.helpers import SECRET

DEFAULT_NAMESPACES = Settings().namespaces  # the shipped ones: room, user, ...

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hubbub_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """What an app's deployment would set: free ports here, history in a temporary file."""
    monkeypatch.setenv("HUBBUB_PORT", "0")
    monkeypatch.setenv("HUBBUB_API_PORT", "0")
    monkeypatch.setenv("HUBBUB_HISTORY_PATH", str(tmp_path / "history.db"))
    yield


async def next_publication(client: Client, channel: str) -> Any:
    subscription = client.subscription(channel)
    assert subscription is not None
    return (await asyncio.wait_for(anext(subscription), 5)).data


async def test_fastapi_under_uvicorn_publishes_from_a_route(hubbub_environment: None) -> None:
    example = load_example("fastapi_app")
    listening = socket.create_server(("127.0.0.1", 0))  # bound before uvicorn runs: requests wait in its backlog
    port = listening.getsockname()[1]
    web_server = uvicorn.Server(uvicorn.Config(example.app, log_level="warning"))
    serving = asyncio.create_task(web_server.serve(sockets=[listening]))
    hub: Server = example.hub
    try:
        await asyncio.wait_for(hub.started.wait(), 10)  # uvicorn ran the lifespan: hubbub is up
        async with Client(hub.url) as client:
            await client.subscribe("order-7")
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"http://127.0.0.1:{port}/orders/7/ship")
            assert answer.json() == {"offset": 1}
            assert await next_publication(client, "order-7") == {"status": "shipped"}
    finally:
        web_server.should_exit = True
        await asyncio.wait_for(serving, 10)
        listening.close()
    assert hub.draining  # uvicorn's shutdown drained hubbub too


async def test_aiohttp_app_publishes_from_a_handler(hubbub_environment: None) -> None:
    example = load_example("aiohttp_app")
    app = example.make_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        hub: Server = app[example.HUB]
        async with Client(hub.url) as client:
            await client.subscribe("order-9")
            async with httpx.AsyncClient() as http:
                answer = await http.post(f"http://127.0.0.1:{port}/orders/9/ship")
            assert answer.json() == {"offset": 1}
            assert await next_publication(client, "order-9") == {"status": "shipped"}
    finally:
        await runner.cleanup()
    assert hub.draining


@pytest.fixture
def django_configured() -> Iterator[None]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
        django.setup()
    yield


def test_django_publishes_after_commit_only(
    hubbub_server: ServerThread, django_configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync test, as Django's are, against the `hubbub_server` fixture apps use (hubbub.testing)."""
    from django.db import transaction

    monkeypatch.setenv("HUBBUB_API_URL", hubbub_server.api_url)
    example = load_example("publish_after_commit")
    example.ship_order(1)
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: example.publisher.publish("order-2", {"status": "never"}))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    example.ship_order(1)  # a retried job: the idempotency key keeps it to one publication
    with Publisher(hubbub_server.api_url) as check:
        shipped = check.history("order-1")["publications"]
        assert [p["data"] for p in shipped] == [{"status": "shipped"}]
        assert check.history("order-2")["publications"] == []
    example.publisher.close()


async def test_hooks_in_process_recipe(start_server: StartServer, open_raw: OpenRaw) -> None:
    example = load_example("hooks_in_process")
    server = await start_server(token_secret=SECRET, namespaces=DEFAULT_NAMESPACES, hooks=example.HOOKS)
    stranger = await open_raw(server, connect=False)
    assert (await stranger.call("connect", {}))["error"]["message"] == "sign in first"
    alice = await open_raw(server, connect=False, headers={"Cookie": "session=s3cr3t"})
    assert (await alice.ok("connect", {}))["subs"] == ["user:alice"]
    await alice.ok("subscribe", {"channel": "room:lobby"})
    await alice.ok("publish", {"channel": "room:lobby", "data": {"text": "  hi  "}})
    assert (await alice.next_publication())["data"] == {"id": 1, "text": "hi", "by": "alice"}
    assert (await alice.call("publish", {"channel": "room:lobby", "data": {}}))["error"]["code"] == 1001


def test_celery_task_publishes_once_from_a_real_worker(
    hubbub_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.contrib.testing.worker import start_worker

    monkeypatch.setenv("HUBBUB_API_URL", hubbub_server.api_url)
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    example = load_example("celery_tasks")
    example.app.conf.update(result_backend="cache+memory://", broker_connection_retry_on_startup=False)
    with start_worker(example.app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
        first = example.order_shipped.delay(5).get(timeout=20)
        again = example.order_shipped.delay(5).get(timeout=20)  # the same job twice: one publication
    assert first == again == 1
    with Publisher(hubbub_server.api_url) as check:
        assert [p["data"] for p in check.history("order-5")["publications"]] == [{"status": "shipped"}]
    example.publisher.close()


def test_the_testing_recipe(hubbub_server: ServerThread) -> None:
    load_example("test_shipping").test_shipping_publishes(hubbub_server)


def test_the_docs_show_the_example_files_as_they_are() -> None:
    """Each example file is shown whole in docs/integration.md (or graphql.md, centrifugo-sdks.md), unchanged."""
    shown = []
    for page in ("integration.md", "graphql.md", "centrifugo-sdks.md"):
        text = (ROOT / "docs" / page).read_text()
        shown += [
            (page, *found) for found in re.findall(r"```python\n# (examples/\w+\.py)\n(.*?)```", text, flags=re.S)
        ]
    assert sorted(name for _, name, _ in shown) == sorted(f"examples/{p.name}" for p in EXAMPLES.glob("*.py"))
    for page, name, code in shown:
        source = (ROOT / name).read_text()
        assert code == source, f"docs/{page} shows an outdated {name}"


async def test_the_graphql_ticker_example_prints_prices(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/graphql.md's walk-through: the shipped example schema, `hubbub demo ticker`'s feed,
    and examples/graphql_ticker.py (gql) printing one symbol's prices."""
    from hubbub.demo import run_ticker

    server = await start_server(graphql_schema="hubbub.graphql.example:schema", namespaces=DEFAULT_NAMESPACES)
    example = load_example("graphql_ticker")
    feed = asyncio.create_task(run_ticker(server.api_url, symbols=3, rate=300, report=False))
    try:
        await asyncio.wait_for(example.watch(f"ws://127.0.0.1:{server.port}/graphql", "EMUB", count=3), 20)
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"EMUB \d+\.\d\d \([+-]\d+\.\d{3}%\)", line) for line in lines), lines


async def test_the_centrifuge_ticker_example_prints_prices(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/centrifugo-sdks.md's walk-through: the embedded defaults, `hubbub demo ticker`'s feed,
    and examples/centrifuge_ticker.py (centrifuge-python, unchanged) printing one symbol's prices."""
    from hubbub.demo import run_ticker

    server = await start_server(namespaces=DEFAULT_NAMESPACES)
    example = load_example("centrifuge_ticker")
    feed = asyncio.create_task(run_ticker(server.api_url, symbols=3, rate=300, report=False))
    try:
        url = f"ws://127.0.0.1:{server.port}/connection/centrifugo"
        await asyncio.wait_for(example.watch(url, "EMUB", count=3), 20)
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"EMUB \d+\.\d\d \([+-]\d+\.\d{3}%\)", line) for line in lines), lines
