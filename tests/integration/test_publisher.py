"""Publisher (sync, from a thread with no event loop) and AsyncPublisher against real servers:
every call, the error tree, retries, and idempotency keys honoured across nodes with Redis."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from hubbub import (
    ApiError,
    AsyncPublisher,
    Client,
    Publisher,
    PublisherNetworkError,
    PublisherTimeout,
    Unauthorized,
)
from tests.conftest import StartServer
from tests.redis_server import free_port


def in_a_thread_without_a_loop(work: Any) -> Any:
    """Run `work` where Django views and Celery tasks run: a thread with no event loop."""

    def run() -> Any:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        assert threading.current_thread() is not threading.main_thread()
        return work()

    return asyncio.to_thread(run)


async def test_sync_publisher_covers_the_server_api(start_server: StartServer) -> None:
    server = await start_server(api_key="k" * 32)
    async with Client(server.url) as client:
        subscription = await client.subscribe("chat:room")
        received: asyncio.Queue[Any] = asyncio.Queue()
        await client.subscribe("default-news", received.put_nowait)

        def work() -> dict[str, Any]:
            with Publisher(server.api_url, api_key="k" * 32) as hub:
                results: dict[str, Any] = {}
                results["publish"] = hub.publish("chat:room", {"text": "from a task"}, info={"name": "Billing"})
                results["broadcast"] = hub.broadcast(["chat:room", "default-news"], {"all": True})
                results["batch"] = hub.batch([("chat:room", 1), ("chat:room", 2)])
                results["history"] = hub.history("chat:room", since=1, limit=10)
                results["presence"] = hub.presence("chat:room")
                results["channels"] = hub.channels()
                results["info"] = hub.info()
                results["send"] = hub.send("nobody", {"x": 1})
                results["subscribe"] = hub.subscribe("nobody", "chat:room")
                results["unsubscribe"] = hub.unsubscribe("nobody", "chat:room")
                results["disconnect"] = hub.disconnect("nobody")
                return results

        results = await in_a_thread_without_a_loop(work)
        assert results["publish"]["offset"] == 1 and results["publish"]["epoch"]
        assert [r["offset"] for r in results["batch"]["results"]] == [3, 4]
        assert [p["offset"] for p in results["history"]["publications"]] == [2, 3, 4]
        assert len(results["presence"]["clients"]) == 1
        assert results["channels"]["channels"]["chat:room"] == {"subscribers": 1}
        assert results["info"]["connections"] == 1
        assert results["disconnect"] == {"connections": 0}
        first = await asyncio.wait_for(anext(subscription), 5)
        assert first.data == {"text": "from a task"} and first.info == {
            "user": "",
            "client": "",
            "info": {"name": "Billing"},
        }
        assert (await asyncio.wait_for(received.get(), 5)).data == {"all": True}


async def test_the_error_tree(start_server: StartServer) -> None:
    server = await start_server(api_key="k" * 32)
    closed_port = free_port()
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    silent = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def work() -> list[Exception]:
        raised = []
        calls = [
            (Publisher(server.api_url, api_key="wrong"), lambda hub: hub.publish("chat:room", 1)),
            (Publisher(server.api_url, api_key="k" * 32), lambda hub: hub.publish("nope:room", 1)),
            (Publisher(f"http://127.0.0.1:{closed_port}", retries=1), lambda hub: hub.publish("chat:room", 1)),
            (Publisher(silent, timeout=0.2, retries=0), lambda hub: hub.info()),
        ]
        for publisher, call in calls:
            with publisher:
                try:
                    call(publisher)
                except Exception as exc:
                    raised.append(exc)
        return raised

    unauthorized, unknown, unreachable, timeout = await in_a_thread_without_a_loop(work)
    listener.close()
    assert isinstance(unauthorized, Unauthorized) and unauthorized.status == 401 and unauthorized.code == 101
    assert isinstance(unknown, ApiError) and unknown.code == 102 and not unknown.temporary
    assert isinstance(unreachable, PublisherNetworkError)
    assert isinstance(timeout, PublisherTimeout)


async def test_a_retried_publish_with_the_same_key_publishes_once(start_server: StartServer) -> None:
    server = await start_server()
    async with AsyncPublisher(server.api_url) as hub:
        first = await hub.publish("chat:room", {"n": 1}, idempotency_key="order-42")
        again = await hub.publish("chat:room", {"n": 1}, idempotency_key="order-42")
        other = await hub.publish("chat:room", {"n": 2}, idempotency_key="order-43")
        elsewhere = await hub.publish("default-x", {"n": 1}, idempotency_key="order-42")  # keys are per channel
    assert first == again and other["offset"] == first["offset"] + 1 and elsewhere["offset"] == 1
    history = await server.history("chat:room")
    assert len(history.publications) == 2
    direct = await server.publish("chat:room", 3, idempotency_key="order-42")  # in-process: the same store
    assert (direct.offset, direct.epoch) == (first["offset"], first["epoch"])


async def test_idempotency_keys_hold_across_nodes_with_redis(start_server: StartServer, redis_url: str) -> None:
    prefix = f"idem-{free_port()}"
    one = await start_server(broker=redis_url, redis_prefix=prefix)
    two = await start_server(broker=redis_url, redis_prefix=prefix)
    async with AsyncPublisher(one.api_url) as first_node, AsyncPublisher(two.api_url) as second_node:
        first = await first_node.publish("chat:room", {"n": 1}, idempotency_key="k1")
        retried = await second_node.publish("chat:room", {"n": 1}, idempotency_key="k1")  # a retry via another node
    assert retried == first
    assert len((await two.history("chat:room")).publications) == 1


async def test_a_key_still_publishing_answers_in_progress(start_server: StartServer, redis_url: str) -> None:
    """Another node holds the key (its publish is still running): this one answers 115, temporary."""
    from hubbub.backends.redis import RedisIdempotency

    prefix = f"idem-{free_port()}"
    server = await start_server(broker=redis_url, redis_prefix=prefix)
    other_node = RedisIdempotency(redis_url, prefix)
    await other_node.open()
    try:
        assert await other_node.claim("chat:room", "same", 60) is None
        async with AsyncPublisher(server.api_url, retries=0) as hub:
            with pytest.raises(ApiError) as raised:
                await hub.publish("chat:room", 1, idempotency_key="same")
        assert (raised.value.code, raised.value.status, raised.value.temporary) == (115, 409, True)
        await other_node.release("chat:room", "same")  # its publish failed: a retry may publish now
        assert (await server.publish("chat:room", 1, idempotency_key="same")).offset == 1
    finally:
        await other_node.close()


async def test_broadcast_batch_and_send_retried_with_their_key_happen_once(start_server: StartServer) -> None:
    """The publisher retries these too, so they carry keys as well: a retry is answered, not redone."""
    from hubbub.core.auth import mint_token
    from tests.helpers import SECRET

    server = await start_server(token_secret=SECRET)
    messages: asyncio.Queue[Any] = asyncio.Queue()
    async with Client(server.url, token=mint_token(SECRET, "zoe"), on_message=messages.put_nowait):
        async with AsyncPublisher(server.api_url) as hub:
            first = await hub.broadcast(["chat:a", "chat:b"], {"n": 1}, idempotency_key="b-1")
            assert await hub.broadcast(["chat:a", "chat:b"], {"n": 1}, idempotency_key="b-1") == first
            batch = await hub.batch([("chat:a", 2), ("chat:b", 2)], idempotency_key="t-1")
            assert await hub.batch([("chat:a", 2), ("chat:b", 2)], idempotency_key="t-1") == batch
            await hub.send("zoe", "once", idempotency_key="s-1")
            await hub.send("zoe", "once", idempotency_key="s-1")
            await hub.send("zoe", "then this")  # a key of its own, made by the publisher
        assert [await asyncio.wait_for(messages.get(), 5) for _ in range(2)] == ["once", "then this"]
    for channel in ("chat:a", "chat:b"):
        assert [bytes(p.data) for p in (await server.history(channel)).publications] == [b'{"n":1}', b"2"]


async def test_in_process_batch_and_broadcast(start_server: StartServer) -> None:
    server = await start_server()
    results = await server.batch([("chat:a", {"tick": 1}), ("chat:b", {"tick": 1})], idempotency_key="tick-1")
    assert [r.offset for r in results] == [1, 1]
    again = await server.batch([("chat:a", {"tick": 1}), ("chat:b", {"tick": 1})], idempotency_key="tick-1")
    assert again == results
    both = await server.broadcast(["chat:a", "chat:b"], "all")
    assert [r.offset for r in both] == [2, 2]
