"""A reconnecting asyncio client.

After a dropped connection it reconnects with exponential backoff and full jitter
(delay = uniform(0, min(max_delay, min_delay * 2**attempt))), connects again, and
resubscribes every channel from the last offset it saw, so publications missed while away
arrive once, in order, before new ones. When the server cannot recover the gap
(`recovered: false`) the subscription's `on_unrecovered` callback runs so the app can
reload its state.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from hubbub.errors import ClientError, ConnectionLost, ErrorCode, ReplyError, close_code_allows_reconnect
from hubbub.protocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK

log = logging.getLogger("hubbub.client")

TokenSource = str | Callable[[], str | Awaitable[str]] | None
PublicationCallback = Callable[["ClientPublication"], Any]


async def token_from(source: TokenSource) -> str | None:
    """A token itself, or what a (sync or async) token function returns now."""
    if source is None or isinstance(source, str):
        return source
    value = source()
    return await value if inspect.isawaitable(value) else value


@dataclass(frozen=True, slots=True)
class ClientPublication:
    channel: str
    data: Any
    offset: int | None = None
    info: dict[str, Any] | None = None
    time: int | None = None  # when the server accepted it: milliseconds since the Unix epoch


class Subscription:
    """A channel subscription that survives reconnects. Iterate it, or pass a callback."""

    def __init__(
        self,
        client: Client,
        channel: str,
        callback: PublicationCallback | None,
        on_unrecovered: Callable[[Subscription], Any] | None,
        token: TokenSource = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.offset: int | None = None
        self.epoch: str | None = None
        self.recovered: bool | None = None
        self.token = token  # a subscription token, or a function that returns a fresh one
        self.server_side = False  # subscribed by the server (connect hook, token, server API)
        # Why the server ended the subscription ({"code", "reason"}), when it did.
        self.unsubscribed: dict[str, Any] | None = None
        self._callback = callback
        self._on_unrecovered = on_unrecovered
        self._queue: asyncio.Queue[ClientPublication | None] = asyncio.Queue()
        self.active = True

    def _apply_position(self, result: dict[str, Any]) -> None:
        if result.get("was_recovering"):
            self.recovered = bool(result.get("recovered"))
        # A fresh start (first subscribe, or a gap that could not be filled) takes the stream's
        # position, after delivering what the reply carries (a conflated channel's snapshot).
        fresh = "epoch" in result and (not result.get("was_recovering") or not self.recovered)
        if "epoch" in result:
            self.epoch = result["epoch"]
        if fresh:
            self.offset = None
        for publication in result.get("publications") or ():
            self._deliver(publication)
        if fresh:
            self.offset = max(self.offset or 0, result.get("offset", 0))
        if result.get("was_recovering") and not self.recovered and self._on_unrecovered is not None:
            self.client._call_user(self._on_unrecovered, self)

    def _deliver(self, publication: dict[str, Any]) -> None:
        offset = publication.get("offset")
        if offset is not None:
            if self.offset is not None and offset <= self.offset:
                return  # already seen (a replay overlapping the live stream)
            self.offset = offset
        item = ClientPublication(
            self.channel, publication.get("data"), offset, publication.get("info"), publication.get("time")
        )
        if self._callback is not None:
            self.client._call_user(self._callback, item)
        else:
            self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[ClientPublication]:
        return self

    async def __anext__(self) -> ClientPublication:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def _end(self) -> None:
        self.active = False
        self._queue.put_nowait(None)

    async def unsubscribe(self) -> None:
        await self.client.unsubscribe(self.channel)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    on_result: Callable[[dict[str, Any]], None] | None


class Client:
    """Connects to `url` (ws://host:port/connection/websocket) and keeps connecting."""

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource = None,
        name: str = "hubbub-python",
        min_reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 20.0,
        command_timeout: float = 10.0,
        on_message: Callable[[Any], Any] | None = None,
        on_read: Callable[[str, dict[str, Any]], Any] | None = None,
        on_subscribed: Callable[[Subscription], Any] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        ssl: SSLContext | None = None,
        encoding: str = "json",
        max_message_bytes: int | None = 2**26,
        open_timeout: float | None = 10.0,
    ) -> None:
        if encoding not in ("json", "msgpack"):
            raise ClientError(f"encoding must be json or msgpack, not {encoding!r}")
        self.url = url
        self.encoding = encoding
        self._ssl = ssl
        self.max_message_bytes = max_message_bytes  # largest frame accepted from the server; None: any
        self.open_timeout = open_timeout  # seconds for TCP, TLS and the WebSocket handshake
        self.name = name
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.command_timeout = command_timeout
        self.client_id: str | None = None
        self.state = "disconnected"
        self.last_close_code: int | None = None
        self._token = token
        self._on_message = on_message
        self._on_read = on_read  # (channel, {"user", "offset"}): a read position moved
        # The server subscribed this client to a channel (server-side): iterate the Subscription.
        self._on_subscribed = on_subscribed
        self.connect_data = data  # sent with every connect, for the application's connect hook
        self.headers = headers  # extra upgrade request headers (a session Cookie for a connect hook)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._decoder = msgspec.json.Decoder()

    # ---- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and wait until the server accepted `connect` (raises if it refuses)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        await self._wait_connected(None)

    async def close(self) -> None:
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        for subscription in self._subscriptions.values():
            subscription._end()
        self.state = "closed"

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _wait_connected(self, within: float | None) -> None:
        waiter = asyncio.ensure_future(self._connected.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({waiter, closing}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closing.cancel()
        if self._fatal is not None:
            raise self._fatal
        if self._closing.is_set():
            raise ClientError("client is closed")
        if not done:
            raise TimeoutError("not connected")

    def reconnect_delay(self, attempt: int) -> float:
        """Full jitter: uniform over [0, min(max, min * 2**attempt)] so a crowd spreads out."""
        ceiling = min(self.max_reconnect_delay, self.min_reconnect_delay * 2 ** min(attempt, 32))
        return random.uniform(0, ceiling)

    def _call_user(self, callback: Callable[[Any], Any], argument: Any) -> None:
        """Run an application callback; its failure is logged, never fatal to the connection."""
        try:
            outcome = callback(argument)
            if inspect.isawaitable(outcome):
                self._spawn(outcome)
        except Exception:
            log.exception("callback %r failed", callback)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _run(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            self.state = "connecting"
            try:
                name = SUBPROTOCOL_MSGPACK if self.encoding == "msgpack" else SUBPROTOCOL_JSON
                subprotocols = [Subprotocol(name)]
                options: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
                if self.headers:
                    options["additional_headers"] = self.headers
                async with connect(
                    self.url,
                    subprotocols=subprotocols,
                    max_size=self.max_message_bytes,
                    open_timeout=self.open_timeout,
                    **options,
                ) as ws:
                    self._ws = ws
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        await self._handshake()
                        attempt = 0
                        await reader
                    finally:
                        reader.cancel()
                        await asyncio.gather(reader, return_exceptions=True)
                self.last_close_code = ws.close_code
            except ReplyError as exc:
                if exc.code == ErrorCode.TOKEN_EXPIRED and callable(self._token):
                    log.info("token expired at connect: the next attempt asks the token function again")
                elif not exc.temporary:
                    self._fatal = exc  # a refused token will be refused again
                    break
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, ConnectionLost) as exc:
                log.info("connection to %s lost: %s", self.url, exc)
                if isinstance(exc, ConnectionClosed):
                    self.last_close_code = exc.rcvd.code if exc.rcvd is not None else None
            except InvalidURI as exc:
                self._fatal = ClientError(str(exc))
                break
            finally:
                self._ws = None
                self._connected.clear()
                self._fail_pending()
            if self._closing.is_set():
                break
            if not close_code_allows_reconnect(self.last_close_code):
                self._fatal = ClientError(f"server closed the connection with code {self.last_close_code}")
                break
            self.state = "disconnected"
            delay = self.reconnect_delay(attempt)
            attempt += 1
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass
        self.state = "closed" if self._closing.is_set() else "failed"
        self._closing.set()  # wake anyone waiting for a connection that will not come

    async def _handshake(self) -> None:
        params: dict[str, Any] = {"name": self.name}
        token = await token_from(self._token)
        if token is not None:
            params["token"] = token
        if self.connect_data is not None:
            params["data"] = self.connect_data
        positions = {
            channel: {"offset": subscription.offset, "epoch": subscription.epoch}
            for channel, subscription in self._subscriptions.items()
            if subscription.server_side and subscription.offset is not None and subscription.epoch is not None
        }
        if positions:  # the server resubscribes these itself and recovers from here
            params["subs"] = positions
        result = await self._command("connect", params, require_connected=False, on_result=self._apply_server_side)
        self.client_id = result["client"]
        for subscription in list(self._subscriptions.values()):
            if not subscription.server_side:
                await self._send_subscribe(subscription, require_connected=False)
        self.state = "connected"
        self._connected.set()

    def _apply_server_side(self, result: dict[str, Any]) -> None:
        """Server-side subscriptions the server no longer makes end here (a subscribe push follows
        for each one it makes)."""
        kept = set(result.get("subs") or ())
        for channel, subscription in list(self._subscriptions.items()):
            if subscription.server_side and channel not in kept:
                del self._subscriptions[channel]
                subscription._end()

    def _server_subscribed(self, channel: str, result: dict[str, Any]) -> None:
        subscription = self._subscriptions.get(channel)
        fresh = subscription is None
        if subscription is None:
            subscription = self._subscriptions[channel] = Subscription(self, channel, None, None)
            subscription.server_side = True
        subscription._apply_position(result)
        if fresh and self._on_subscribed is not None:
            self._call_user(self._on_subscribed, subscription)

    def subscription(self, channel: str) -> Subscription | None:
        """The subscription to `channel`, client- or server-side, if there is one."""
        return self._subscriptions.get(channel)

    async def _refresh(self) -> None:
        """The server asked for a fresh token: get one from the app's callable and send it."""
        if self._token is None or isinstance(self._token, str):
            log.warning("server asked for a token refresh, but the client has no token callable")
            return
        token = await token_from(self._token)
        await self._command("refresh", {"token": token})

    async def _sub_refresh(self, subscription: Subscription) -> None:
        """The server asked for a fresh subscription token: get one from the app's callable and send it."""
        if not callable(subscription.token):
            log.warning(
                "server asked for a token for %s, but its subscription has no token callable", subscription.channel
            )
            return
        token = await token_from(subscription.token)
        await self._command("sub_refresh", {"channel": subscription.channel, "token": token})

    def _server_unsubscribed(self, subscription: Subscription, notice: dict[str, Any]) -> None:
        """The server ended a subscription. An expired token with a token callable subscribes again
        (recovering what came meanwhile); otherwise the subscription ends and says why."""
        if notice.get("code") == ErrorCode.TOKEN_EXPIRED and callable(subscription.token):
            self._spawn(self._send_subscribe(subscription, require_connected=True))
            return
        subscription.unsubscribed = notice
        if self._subscriptions.get(subscription.channel) is subscription:
            del self._subscriptions[subscription.channel]
        subscription._end()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(ConnectionLost("connection lost before the reply"))

    # ---- wire ----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            await self._read_frames(ws)
        finally:
            # From now on commands wait for the next connection, and whoever awaits a reply
            # learns at once that it will not come.
            self._connected.clear()
            if self.state == "connected":
                self.state = "disconnected"
            self._fail_pending()

    async def _read_frames(self, ws: ClientConnection) -> None:
        async for frame in ws:
            if isinstance(frame, bytes) and self.encoding == "msgpack":
                self._read_msgpack(frame)
                continue
            # Split at "\n" only, as the protocol says: str.splitlines() also breaks at U+2028,
            # U+2029, U+0085 and a lone CR, which JSON strings and whitespace may hold.
            for line in frame.encode().split(b"\n") if isinstance(frame, str) else frame.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    message = self._decoder.decode(line)
                except msgspec.DecodeError:
                    log.warning("ignoring a line that is not JSON: %.80r", line)
                    continue
                self._dispatch(message)

    def _read_msgpack(self, frame: bytes) -> None:
        """A binary frame holds one message (a map) or several (an array of maps)."""
        try:
            value = msgspec.msgpack.decode(frame)
        except msgspec.DecodeError:
            log.warning("ignoring a frame that is not MessagePack: %.80r", frame)
            return
        for message in value if isinstance(value, list) else [value]:
            if isinstance(message, dict):
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        command_id = message.get("id")
        if command_id is not None:
            entry = self._pending.pop(command_id, None)
            if entry is None or entry.future.done():
                return
            error = message.get("error")
            if error is not None:
                entry.future.set_exception(
                    ReplyError(error.get("code", 0), error.get("message", ""), error.get("temporary", False))
                )
                return
            result: dict[str, Any] = next((value for key, value in message.items() if key != "id"), {})
            if entry.on_result is not None:
                entry.on_result(result)  # in order with the pushes that follow in the stream
            entry.future.set_result(result)
            return
        push = message.get("push")
        if push is None:
            return
        channel = push.get("channel")
        if "pub" in push:
            subscription = self._subscriptions.get(channel)
            if subscription is not None:
                subscription._deliver(push["pub"])
        elif "message" in push and self._on_message is not None:
            self._call_user(self._on_message, push["message"].get("data"))
        elif "read" in push and channel is not None:
            if self._on_read is not None:
                on_read = self._on_read
                self._call_user(lambda notice: on_read(channel, notice), push["read"])
        elif "sub_refresh" in push:
            subscription = self._subscriptions.get(channel)
            if subscription is not None:
                self._spawn(self._sub_refresh(subscription))
        elif "subscribe" in push and channel is not None:
            self._server_subscribed(channel, push["subscribe"])
        elif "unsubscribe" in push:
            subscription = self._subscriptions.get(channel)
            if subscription is not None:
                self._server_unsubscribed(subscription, push["unsubscribe"])
        elif "refresh" in push:
            self._spawn(self._refresh())
        elif "disconnect" in push:
            self.last_close_code = push["disconnect"].get("code")

    async def _command(
        self,
        method: str,
        params: dict[str, Any],
        *,
        require_connected: bool = True,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        if require_connected and not self._connected.is_set():
            if self._runner is None:
                raise ClientError("call connect() first")
            await self._wait_connected(self.command_timeout)
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = _Pending(future, on_result)
        try:
            command = {"id": command_id, method: params}
            if self.encoding == "msgpack":
                await ws.send(msgspec.msgpack.encode(command))
            else:
                await ws.send(msgspec.json.encode(command).decode())
            return await asyncio.wait_for(asyncio.shield(future), self.command_timeout)
        except ConnectionClosed:
            raise ConnectionLost("connection lost while sending") from None
        finally:
            self._pending.pop(command_id, None)

    # ---- API -----------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: PublicationCallback | None = None,
        *,
        since: dict[str, Any] | None = None,
        on_unrecovered: Callable[[Subscription], Any] | None = None,
        token: TokenSource = None,
    ) -> Subscription:
        """Subscribe; with `since={"offset", "epoch"}` first replay what came after it.

        `token` is a subscription token, or a function returning one (called at every subscribe and
        when the server asks for a fresh one ahead of its expiry, so the subscription outlives it).
        """
        if channel in self._subscriptions:
            raise ClientError(f"already subscribed to {channel!r}")
        subscription = Subscription(self, channel, callback, on_unrecovered, token)
        if since is not None:
            subscription.offset = since["offset"]
            subscription.epoch = since["epoch"]
        self._subscriptions[channel] = subscription
        try:
            await self._send_subscribe(subscription, require_connected=True)
        except BaseException:
            self._subscriptions.pop(channel, None)
            raise
        return subscription

    async def _send_subscribe(self, subscription: Subscription, *, require_connected: bool) -> None:
        params: dict[str, Any] = {"channel": subscription.channel}
        token = await token_from(subscription.token)
        if token is not None:
            params["token"] = token
        if subscription.offset is not None and subscription.epoch is not None:
            params["since"] = {"offset": subscription.offset, "epoch": subscription.epoch}
        await self._command(
            "subscribe", params, require_connected=require_connected, on_result=subscription._apply_position
        )

    async def unsubscribe(self, channel: str) -> None:
        subscription = self._subscriptions.pop(channel, None)
        if subscription is None:
            return
        subscription._end()
        await self._command("unsubscribe", {"channel": channel})

    async def rpc(self, method: str, data: Any = None) -> Any:
        """Call `method` on the application (its rpc hook); returns the data it answered."""
        result = await self._command("rpc", {"method": method, "data": data})
        return result.get("data")

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return await self._command("publish", {"channel": channel, "data": data})

    async def history(
        self,
        channel: str,
        *,
        limit: int | None = None,
        since: dict[str, Any] | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": channel}
        if limit is not None:
            params["limit"] = limit
        if since is not None:
            params["since"] = since
        if reverse:
            params["reverse"] = True
        return await self._command("history", params)

    async def presence(self, channel: str) -> dict[str, Any]:
        return await self._command("presence", {"channel": channel})

    async def send(self, user: str, data: Any) -> None:
        await self._command("send", {"user": user, "data": data})

    async def ping(self) -> None:
        await self._command("ping", {})

    async def mark_read(self, channel: str, offset: int) -> int:
        """Read `channel` up to `offset`; returns the position the server keeps (never backwards)."""
        return int((await self._command("mark_read", {"channel": channel, "offset": offset}))["offset"])

    async def read_positions(self, channels: list[str]) -> dict[str, Any]:
        """Per channel: {"read", "offset", "unread"} (and "seen" in member-named channels)."""
        result: dict[str, Any] = (await self._command("read_positions", {"channels": channels}))["channels"]
        return result
