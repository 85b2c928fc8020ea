"""FastAPI with hubbub in the same process and event loop: a route handler publishes.

HUBBUB_TOKEN_SECRET=... uvicorn examples.fastapi_app:app
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import hubbub

hub = hubbub.Server(hubbub.load_settings(environ=os.environ))  # HUBBUB_* variables, as `hubbub serve`


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub:  # binds hubbub's ports in uvicorn's loop; drains them when uvicorn stops
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/orders/{order_id}/ship")
async def ship(order_id: int) -> dict[str, int | None]:
    result = await hub.publish(f"order-{order_id}", {"status": "shipped"})  # returns once in history
    return {"offset": result.offset}
