"""Servers for Centrifugo's SDKs: tokens required, a chat namespace with history, presence and
join/leave, a private one (subscription tokens), a refused one, and an rpc hook."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from hubbub.config import NamespaceOptions
from hubbub.hooks import Hooks, RpcEvent
from hubbub.server import Server
from tests.centrifugo.apps import App, NodeApp, PageApp, PythonApp
from tests.conftest import StartServer
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, CHROMIUM_PRESENT
from tests.helpers import SECRET

NAMESPACES = {
    "default": NamespaceOptions(),
    "chat": NamespaceOptions(
        history_size=100, history_ttl=300, presence=True, join_leave=True, publish="authenticated"
    ),
    "private": NamespaceOptions(history_size=100, history_ttl=300, subscribe="token", publish="token"),
    "secret": NamespaceOptions(subscribe="server"),
}
KINDS = ["python-json", "python-protobuf", "node-json", "node-protobuf", "chromium-json", "chromium-protobuf"]


async def answer(event: RpcEvent) -> Any:
    """The application's rpc hook: echoes what it was asked, and by whom."""
    return {"method": event.method, "user": event.user, "data": event.data}


def centrifugo_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/connection/centrifugo"


@pytest.fixture
def start_centrifugo(start_server: StartServer) -> StartServer:
    return centrifugo_starter(start_server)


def centrifugo_starter(start_server: StartServer) -> StartServer:
    """`start_server` with this folder's namespaces, a token key and the rpc hook."""

    async def start(*, hooks: Hooks | None = None, **overrides: Any) -> Server:
        values: dict[str, Any] = {"namespaces": NAMESPACES, "token_secret": SECRET}
        values.update(overrides)
        return await start_server(hooks=hooks or Hooks(rpc=answer), **values)

    return start


@pytest.fixture
async def centrifugo_server(start_centrifugo: StartServer) -> Server:
    return await start_centrifugo()


OpenApp = Callable[..., Awaitable[App]]


@pytest.fixture(params=KINDS)
async def open_app(request: pytest.FixtureRequest) -> AsyncIterator[OpenApp]:
    """Opens SDK clients of one kind (the test runs once per kind); all closed after the test."""
    kind: str = request.param
    language, encoding = kind.split("-")
    protobuf = encoding == "protobuf"
    apps: list[App] = []
    pages: list[Page] = []
    errors: list[str] = []
    async with AsyncExitStack() as stack:
        browser: list[Browser] = []  # launched on first use: only the chromium kinds need it

        async def page() -> Page:
            if not browser:
                if not CHROMIUM_PRESENT:
                    pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
                playwright = await stack.enter_async_context(async_playwright())
                browser.append(await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS))
            opened = await browser[0].new_page()
            opened.on("pageerror", lambda error: errors.append(str(error)))
            pages.append(opened)
            return opened

        yield_value = _opener(language, protobuf, apps, page)
        yield yield_value
        for app in apps:
            try:
                await asyncio.wait_for(app.close(), 10)
            except Exception:  # a test that stopped its server first: closing is best effort
                pass
        for opened in pages:
            await opened.close()
    assert not errors, f"a page raised: {errors}"


def _opener(language: str, protobuf: bool, apps: list[App], page: Callable[[], Awaitable[Page]]) -> OpenApp:

    async def open_one(server: Server, tokens: list[str] | None = None) -> App:
        url = centrifugo_url(server)
        app: App
        if language == "python":
            app = PythonApp(url, protobuf=protobuf, tokens=tokens)
        elif language == "node":
            app = await NodeApp.start(url, protobuf=protobuf, tokens=tokens)
        else:
            origin = f"http://127.0.0.1:{server.port}"
            app = await PageApp.start(await page(), origin, url, protobuf=protobuf, tokens=tokens)
        apps.append(app)
        return app

    return open_one


@dataclass
class RestartableNode:
    """A node over the test's Redis, and a publisher node beside it: SDK clients of `node`
    recover after `restart()` what `publisher` put in history while it was down."""

    publisher: Server
    node: Server
    settings: dict[str, Any]
    start: StartServer
    channel: str

    async def restart(self) -> None:
        self.node = await self.start(**self.settings, port=self.node.port, api_port=self.node.api_port)


@pytest.fixture
async def restartable(redis_url: str, start_centrifugo: StartServer) -> RestartableNode:
    settings: dict[str, Any] = {"broker": redis_url}
    publisher = await start_centrifugo(**settings)
    node = await start_centrifugo(**settings)
    return RestartableNode(publisher, node, settings, start_centrifugo, f"chat:{uuid.uuid4().hex[:8]}")
