"""Centrifugo's SDKs as the tests run them, unchanged, behind one interface: commands in
({op, ...}), events out ({event, ...}).

- `PythonApp`: centrifuge-python (PyPI), in this process, JSON or Protobuf.
- `NodeApp`: centrifuge-js (npm `centrifuge`) in Node.js, JSON or Protobuf build
  (tests/js/centrifuge_client.mjs around tests/js/centrifuge_app.js).
- `PageApp`: the same app in Debian's chromium, with the package's own browser bundle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import centrifuge
from playwright.async_api import Page

from tests.node import NodeProcess

Event = dict[str, Any]
Matches = Callable[[Event], object]

JS_DIR = Path(__file__).resolve().parent.parent / "js"
PACKAGE = JS_DIR / "node_modules" / "centrifuge"
BUNDLES = {False: PACKAGE / "dist" / "centrifuge.js", True: PACKAGE / "dist" / "centrifuge.protobuf.js"}
_ids = itertools.count(1)


def require_node_modules() -> None:
    assert PACKAGE.is_dir(), "run `make test` (it runs npm ci in tests/js)"


class EventLog:
    """What an app emitted, in order; `event` takes the first match not taken yet."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._waiting: list[Event] = []
        self._changed = asyncio.Event()

    def append(self, event: Event) -> None:
        self.seen.append(event)
        self._waiting.append(event)
        self._changed.set()

    async def event(self, matches: Matches, timeout: float = 15.0) -> Event:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for index, waiting in enumerate(self._waiting):
                        if matches(waiting):
                            return self._waiting.pop(index)
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no such event within {timeout}s; the app said {self.seen}") from None


class App:
    """One SDK client: `send` a command, wait for an `event`, `call` for a result."""

    def __init__(self) -> None:
        self.log = EventLog()

    async def send(self, **command: Any) -> None:
        raise NotImplementedError

    async def event(self, matches: Matches, timeout: float = 15.0) -> Event:
        return await self.log.event(matches, timeout)

    async def call(self, op: str, **arguments: Any) -> Event:
        """Run a call (publish, history, presence, presence_stats, rpc); its result or error."""
        call_id = next(_ids)
        await self.send(op=op, id=call_id, **arguments)
        return await self.event(lambda e: e["event"] == "result" and e["id"] == call_id)

    async def close(self) -> None:
        raise NotImplementedError


def decoded(data: Any) -> Any:
    return json.loads(data) if isinstance(data, bytes | str) else data


class PythonApp(App):
    """centrifuge-python: the same app as centrifuge_app.js, written against its API."""

    def __init__(self, url: str, *, protobuf: bool, tokens: list[str] | None = None) -> None:
        super().__init__()
        self.protobuf = protobuf
        queue = list(tokens or [])
        self.client = centrifuge.Client(
            url,
            events=_ClientEvents(self.log),
            get_token=self._hand_out(queue, {"event": "token", "kind": "connection"}) if queue else None,
            use_protobuf=protobuf,
            min_reconnect_delay=0.05,
            max_reconnect_delay=0.3,
            proxy=None,  # loopback only, whatever the environment says
        )
        self.subs: dict[str, centrifuge.Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _hand_out(self, queue: list[str], event: Event) -> Callable[..., Any]:
        async def get_token(*_: Any) -> str:
            self.log.append(dict(event))
            return queue.pop(0) if len(queue) > 1 else queue[0]

        return get_token

    def _encode(self, value: Any) -> Any:
        return json.dumps(value).encode() if self.protobuf else value

    async def send(self, **command: Any) -> None:
        op = command["op"]
        if op == "connect":
            await self.client.connect()
        elif op == "disconnect":
            await self.client.disconnect()
        elif op == "subscribe":
            channel = command["channel"]
            queue = list(command.get("tokens") or [])
            get_token = self._hand_out(queue, {"event": "token", "kind": "subscription", "channel": channel})
            sub = self.client.new_subscription(
                channel, events=_SubscriptionEvents(self.log, channel), get_token=get_token if queue else None
            )
            self.subs[channel] = sub
            await sub.subscribe()
        elif op == "unsubscribe":
            await self.subs[command["channel"]].unsubscribe()
        else:
            task = asyncio.ensure_future(self._call(command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, command: Event) -> None:
        op, channel = command["op"], command.get("channel", "")
        try:
            result: Event
            if op == "publish":
                await self.client.publish(channel, self._encode(command["data"]))
                result = {}
            elif op == "history":
                history = await self.client.history(channel, limit=command.get("limit", 0))
                publications = [{"data": decoded(p.data), "offset": p.offset} for p in history.publications]
                result = {"publications": publications, "offset": history.offset, "epoch": history.epoch}
            elif op == "presence":
                presence = await self.client.presence(channel)
                result = {"clients": {k: {"user": v.user, "client": v.client} for k, v in presence.clients.items()}}
            elif op == "presence_stats":
                stats = await self.client.presence_stats(channel)
                result = {"num_clients": stats.num_clients, "num_users": stats.num_users}
            elif op == "rpc":
                answer = await self.client.rpc(command["method"], self._encode(command["data"]))
                result = {"data": decoded(answer.data)}
            else:
                raise AssertionError(f"unknown op {op}")
            self.log.append({"event": "result", "id": command["id"], "result": result})
        except centrifuge.CentrifugeError as error:
            code = getattr(error, "code", None)
            self.log.append({"event": "result", "id": command["id"], "error": {"code": code, "message": str(error)}})

    async def close(self) -> None:
        await self.client.disconnect()
        for task in list(self._tasks):
            task.cancel()


class _ClientEvents(centrifuge.ClientEventHandler):
    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def on_connecting(self, ctx: centrifuge.ConnectingContext) -> None:
        self.log.append({"event": "connecting", "code": ctx.code, "reason": ctx.reason})

    async def on_connected(self, ctx: centrifuge.ConnectedContext) -> None:
        self.log.append({"event": "connected", "client": ctx.client})

    async def on_disconnected(self, ctx: centrifuge.DisconnectedContext) -> None:
        self.log.append({"event": "disconnected", "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: centrifuge.ErrorContext) -> None:
        self.log.append({"event": "error", "code": ctx.code})

    async def on_subscribed(self, ctx: centrifuge.ServerSubscribedContext) -> None:
        self.log.append({"event": "server_subscribed", "channel": ctx.channel, "recovered": ctx.recovered})

    async def on_unsubscribed(self, ctx: centrifuge.ServerUnsubscribedContext) -> None:
        self.log.append({"event": "server_unsubscribed", "channel": ctx.channel})

    async def on_publication(self, ctx: centrifuge.ServerPublicationContext) -> None:
        pub = ctx.pub
        received = {"channel": ctx.channel, "data": decoded(pub.data), "offset": pub.offset}
        self.log.append({"event": "server_publication", **received})


class _SubscriptionEvents(centrifuge.SubscriptionEventHandler):
    def __init__(self, log: EventLog, channel: str) -> None:
        self.log = log
        self.channel = channel

    async def on_subscribing(self, ctx: centrifuge.SubscribingContext) -> None:
        self.log.append({"event": "subscribing", "channel": self.channel, "code": ctx.code})

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        position = ctx.stream_position
        self.log.append(
            {
                "event": "subscribed",
                "channel": self.channel,
                "recoverable": ctx.recoverable,
                "recovered": ctx.recovered,
                "was_recovering": ctx.was_recovering,
                "position": {"offset": position.offset, "epoch": position.epoch} if position else None,
            }
        )

    async def on_unsubscribed(self, ctx: centrifuge.UnsubscribedContext) -> None:
        self.log.append({"event": "unsubscribed", "channel": self.channel, "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: centrifuge.SubscriptionErrorContext) -> None:
        code = getattr(ctx.error, "code", ctx.code)
        self.log.append({"event": "sub_error", "channel": self.channel, "code": code})

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        pub = ctx.pub
        user = pub.info.user if pub.info is not None else None
        received = {"channel": self.channel, "data": decoded(pub.data), "offset": pub.offset, "user": user}
        self.log.append({"event": "publication", **received})

    async def on_join(self, ctx: centrifuge.JoinContext) -> None:
        self.log.append({"event": "join", "channel": self.channel, "user": ctx.info.user, "client": ctx.info.client})

    async def on_leave(self, ctx: centrifuge.LeaveContext) -> None:
        self.log.append({"event": "leave", "channel": self.channel, "user": ctx.info.user, "client": ctx.info.client})


class NodeApp(App):
    """centrifuge-js in its own Node.js process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__()
        self.process = process
        self._node = NodeProcess(process)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, url: str, *, protobuf: bool, tokens: list[str] | None = None) -> NodeApp:
        require_node_modules()
        options = {"url": url, "protobuf": protobuf, "tokens": tokens or []}
        process = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "centrifuge_client.mjs"),
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=JS_DIR,
        )
        app = cls(process)
        await app.event(lambda e: e["event"] == "ready")
        return app

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.log.append(json.loads(line))
        self.log.append({"event": "exited"})

    async def send(self, **command: Any) -> None:
        await self._node.send(**command)

    async def close(self) -> None:
        await self._node.stop()
        await self._reader


class PageApp(App):
    """centrifuge-js's browser bundle in a chromium page: the app emits through a binding."""

    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page

    @classmethod
    async def start(
        cls, page: Page, origin: str, url: str, *, protobuf: bool, tokens: list[str] | None = None
    ) -> PageApp:
        require_node_modules()
        app = cls(page)
        await page.expose_function("emitEvent", app.log.append)
        await page.goto(f"{origin}/health")  # the endpoint's own origin
        await page.add_script_tag(path=str(BUNDLES[protobuf]))
        await page.add_script_tag(path=str(JS_DIR / "centrifuge_app.js"))
        options = {"url": url, "protobuf": protobuf, "tokens": tokens or []}
        await page.evaluate(
            "(options) => { window.app = startCentrifugeApp(Centrifuge, options, (e) => window.emitEvent(e)); }",
            options,
        )
        return app

    async def send(self, **command: Any) -> None:
        await self.page.evaluate("(command) => window.app.run(command)", command)

    async def close(self) -> None:
        await self.send(op="disconnect")
