"""graphql-ws's browser bundle, unchanged, in Debian's chromium (served to the page from the
installed npm package, no CDN): subscriptions, queries, mutations, refusal, recovery."""

from __future__ import annotations

import json
import time
from typing import Any

from playwright.async_api import Page

from hubbub.core.auth import mint_token
from hubbub.server import Server
from tests.graphql.conftest import RestartableNode, subscribers
from tests.graphql.js import JS_DIR, UMD_BUNDLE, require_node_modules
from tests.graphql.wire import graphql_url
from tests.helpers import OTHER_SECRET, SECRET


async def open_app(page: Page, server: Server, token: str | None = None) -> None:
    require_node_modules()
    await page.goto(f"http://127.0.0.1:{server.port}/health")  # same origin as the endpoint
    await page.add_script_tag(path=str(UMD_BUNDLE))
    await page.add_script_tag(path=str(JS_DIR / "graphql_ws_app.js"))
    await page.evaluate(
        """([url, token]) => {
            window.events = [];
            window.app = startGraphqlApp(graphqlWs.createClient, { url, token }, (e) => window.events.push(e));
        }""",
        [graphql_url(server), token],
    )


async def event(page: Page, condition: str, timeout: float = 15_000) -> Any:
    """The first event in the page for which the JS `condition` (on `e`) holds."""
    found = f"window.events.find((e) => {condition})"
    await page.wait_for_function(f"() => {found} !== undefined", timeout=timeout)
    return await page.evaluate(f"() => {found}")


async def nexts(page: Page, operation_id: str, count: int) -> list[Any]:
    condition = f"window.events.filter((e) => e.id === {json.dumps(operation_id)} && e.next).length >= {count}"
    await page.wait_for_function(f"() => {condition}", timeout=15_000)
    return list(
        await page.evaluate(f"() => window.events.filter((e) => e.id === {json.dumps(operation_id)} && e.next)")
    )


async def test_graphql_ws_in_chromium(graphql_server: Server, page: Page) -> None:
    await open_app(page, graphql_server, mint_token(SECRET, "olga"))
    await event(page, "e.event === 'connected'")
    await page.evaluate("() => app.subscribe('me', '{ me }')")
    assert (await nexts(page, "me", 1))[0]["next"] == {"data": {"me": "olga"}}
    await page.evaluate("() => app.subscribe('t', 'subscription { ticker(symbol: \"WEB\") { price } }')")
    await subscribers(graphql_server, "ticker:WEB", 1)
    await page.evaluate("() => app.subscribe('m', 'mutation { tick(symbol: \"WEB\", price: 2.5) }')")
    assert (await nexts(page, "m", 1))[0]["next"] == {"data": {"tick": 1}}
    assert (await nexts(page, "t", 1))[0]["next"]["data"] == {"ticker": {"price": 2.5}}
    await page.evaluate("() => app.subscribe('s', 'subscription { secret(name: \"x\") }')")
    refused = await event(page, "e.id === 's' && e.error")
    assert refused["error"]["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"


async def test_in_band_refresh_in_chromium(graphql_server: Server, page: Page) -> None:
    await open_app(page, graphql_server, mint_token(SECRET, "olga", ttl=60))
    await event(page, "e.event === 'connected'")
    await page.evaluate("(token) => app.refresh(token)", mint_token(SECRET, "olga", ttl=7200))
    pong = await event(page, "e.event === 'pong'")
    assert pong["payload"]["expires_at"] > time.time() + 7000


async def test_a_refused_token_closes_4403_in_chromium(graphql_server: Server, page: Page) -> None:
    await open_app(page, graphql_server, mint_token(OTHER_SECRET, "mallory"))
    closed = await event(page, "e.event === 'closed'")
    assert closed["code"] == 4403


async def test_chromium_resumes_after_a_restart(restartable: RestartableNode, page: Page) -> None:
    await open_app(page, restartable.node)
    await page.evaluate("(query) => app.subscribe('t', query)", restartable.query)
    await subscribers(restartable.node, restartable.channel, 1)
    await restartable.publish(1.0)
    await nexts(page, "t", 1)
    await restartable.node.close()
    await event(page, "e.event === 'closed'")
    await restartable.publish(2.0, 3.0)  # while the node is down
    await restartable.restart()
    got = await nexts(page, "t", 3)
    assert [e["next"]["data"]["ticker"]["price"] for e in got] == [1.0, 2.0, 3.0]
