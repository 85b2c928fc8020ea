"""docs/centrifugo-sdks.md's browser snippet runs as written (only its port adapted) in
chromium, with centrifuge-js's own browser bundle, against the embedded defaults."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import ConsoleMessage, Page

from tests.centrifugo.apps import BUNDLES, require_node_modules
from tests.conftest import StartServer
from tests.e2e.conftest import browser, page  # noqa: F401 (fixtures: Debian's chromium, a page)
from tests.graphql.conftest import subscribers
from tests.integration.test_examples import DEFAULT_NAMESPACES

DOC = Path(__file__).resolve().parents[2] / "docs" / "centrifugo-sdks.md"


async def test_the_browser_snippet_prints_prices(start_server: StartServer, page: Page) -> None:  # noqa: F811
    require_node_modules()
    snippet = re.findall(r"```js\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    server = await start_server(namespaces=DEFAULT_NAMESPACES)  # development mode: no token
    printed: asyncio.Queue[str] = asyncio.Queue()

    def console(message: ConsoleMessage) -> None:
        if message.type == "log":
            printed.put_nowait(message.text)

    page.on("console", console)
    await page.goto(f"http://127.0.0.1:{server.port}/health")
    await page.add_script_tag(path=str(BUNDLES[False]))
    await page.evaluate(snippet.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"))
    await subscribers(server, "ticker:EMUB", 1)
    await server.publish("ticker:EMUB", {"symbol": "EMUB", "price": 101.5, "change": 0.2})
    assert await asyncio.wait_for(printed.get(), 10) == "EMUB 101.5"
