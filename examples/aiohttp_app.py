"""aiohttp with hubbub in the same process and event loop: a handler publishes.

python -m aiohttp.web -P 8080 examples.aiohttp_app:make_app
"""

import os
from collections.abc import AsyncIterator

from aiohttp import web

import hubbub

HUB = web.AppKey("hub", hubbub.Server)


async def run_hubbub(app: web.Application) -> AsyncIterator[None]:
    app[HUB] = hubbub.Server(hubbub.load_settings(environ=os.environ))
    async with app[HUB]:  # started with the app, drained at its cleanup
        yield


async def ship(request: web.Request) -> web.Response:
    result = await request.app[HUB].publish(f"order-{request.match_info['order_id']}", {"status": "shipped"})
    return web.json_response({"offset": result.offset})


def make_app(argv: list[str] | None = None) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(run_hubbub)
    app.router.add_post("/orders/{order_id}/ship", ship)
    return app
