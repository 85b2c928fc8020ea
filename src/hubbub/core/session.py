"""One client connection's state: connect, commands, subscriptions, outbox.

The transport feeds decoded commands to `handle`; replies and pushes leave through the
outbox, in order, so a subscribe reply always precedes the publications that follow it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import Any, Final

import msgspec
from msgspec import Raw

from hubbub import protocol
from hubbub.config import NamespaceOptions
from hubbub.core import permissions
from hubbub.core.application import Application
from hubbub.core.auth import ANONYMOUS, MAX_USER_BYTES, Credentials, TokenVerifier
from hubbub.core.channels import namespace_of
from hubbub.core.hub import Hub
from hubbub.core.ids import new_client_id
from hubbub.core.outbox import Outbox, Sink
from hubbub.core.ratelimit import TokenBucket
from hubbub.errors import CommandError, DisconnectCode, ErrorCode, close_code_allows_reconnect

log = logging.getLogger("hubbub.session")

SERVER_VERSION: Final = "hubbub/0.1"

CallLater = Callable[[float, Callable[[], None]], Any]


class State(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class Session:
    """A client between its WebSocket handshake and its close."""

    def __init__(
        self,
        hub: Hub,
        sink: Sink,
        *,
        verifier: TokenVerifier | None,
        call_later: CallLater,
        clock: Callable[[], float] = time.time,
        app: Application | None = None,
        server_subscriptions: bool = True,
    ) -> None:
        """`server_subscriptions` False: the server never subscribes this connection itself (a
        GraphQL connection receives only what its own operations name)."""
        self.hub = hub
        self._server_subscriptions = server_subscriptions
        self._app = app  # the application's hooks, if it has any
        # Development mode: no token key and no connect hook (anonymous clients may do anything).
        self._development_mode = verifier is None and (app is None or not app.decides_connect)
        self._hook_authenticated = False  # credentials came from the connect hook (refreshed by the refresh hook)
        self._channel_info: dict[str, protocol.ClientInfo] = {}  # info with the subscribe hook's chan_info
        self.sink = sink
        self.client_id = new_client_id()
        self.credentials: Credentials = ANONYMOUS
        self.info = protocol.ClientInfo(user="", client=self.client_id)
        self.state = State.CONNECTING
        # Channels subscribed with a subscription token, and when that token expires (None: never).
        self.grants: dict[str, float | None] = {}
        self._grant_timers: dict[str, list[Any]] = {}
        self._verifier = verifier
        self._call_later = call_later
        self._clock = clock
        self._timers: list[Any] = []
        settings = hub.settings
        self._commands = TokenBucket(settings.command_rate, settings.command_burst)
        self._publishes = TokenBucket(settings.publish_rate, settings.publish_burst)
        self._refused_in_a_row = 0
        self._namespace_publishes: dict[str, TokenBucket] = {}  # namespaces with a publish_rate of their own
        self.outbox = Outbox(
            sink,
            hub.flusher,
            max_bytes=settings.max_outbox_bytes,
            max_batch_bytes=settings.max_batch_bytes,
            on_overflow=self._on_overflow,
            drops=hub.stats.dropped,
        )
        if settings.connect_timeout is not None:
            self._timers.append(call_later(settings.connect_timeout, self._on_connect_timeout))

    @property
    def user(self) -> str:
        return self.credentials.user

    @property
    def channels(self) -> AbstractSet[str]:
        """The channels this session is subscribed to (the hub keeps memberships)."""
        return self.hub.channels_of(self)

    # ---- lifecycle ------------------------------------------------------------------------

    def _on_connect_timeout(self) -> None:
        if self.state is State.CONNECTING:
            self.disconnect(DisconnectCode.CONNECT_TIMEOUT, "connect timeout", notify=False)

    def _on_overflow(self) -> None:
        self.hub.stats.slow_consumer_disconnects += 1
        log.info("client %s is too slow: cut", self.client_id, extra=self.log_context())
        self.disconnect(DisconnectCode.SLOW_CONSUMER, "slow consumer", notify=False)

    def _on_token_expired(self) -> None:
        expires_at = self.credentials.expires_at
        if self.state is State.CONNECTED and expires_at is not None and expires_at <= self._clock():
            self.disconnect(DisconnectCode.TOKEN_EXPIRED, "token expired")

    def disconnect(self, code: int, reason: str, *, notify: bool = True) -> None:
        """Close the connection with `code`. With `notify`, first push a disconnect message."""
        if self.state is State.CLOSED:
            return
        connected = self.state is State.CONNECTED
        self.state = State.CLOSED
        self._cancel_timers()
        self._cancel_grant_timers()
        if connected:
            self._notify_closed(code, reason)
        if notify and not self.outbox.closed:
            reconnect = close_code_allows_reconnect(code)
            self.outbox.push(protocol.encode_disconnect_push(code, reason, reconnect))
            self.outbox.flush()
        self.outbox.discard()
        # Deferred: this may run inside a fan-out loop over the very dict detach changes.
        self.hub.call_soon(lambda: self.hub.detach(self))
        self.sink.close(code, reason)

    def closed(self, code: int | None = None, reason: str = "") -> None:
        """The transport reports the connection gone (any side closed it; `code` as received)."""
        if self.state is State.CONNECTED:
            self._notify_closed(code if code is not None else 1006, reason)
        self.state = State.CLOSED
        self._cancel_timers()
        self._cancel_grant_timers()
        self.outbox.discard()
        self.hub.detach(self)

    def _notify_closed(self, code: int, reason: str) -> None:
        """Tell the application (disconnect hook, and unsubscribe for each channel), in the background."""
        if self._app is not None:
            self._app.closed(self.client_id, self.user, list(self.channels), code, reason)

    def _notify_unsubscribed(self, channel: str, reason: str) -> None:
        if self._app is not None:
            self._app.unsubscribed(self.client_id, self.user, channel, reason)

    def _cancel_timers(self) -> None:
        _cancel(self._timers)

    def _cancel_grant_timers(self, channel: str | None = None) -> None:
        channels = [channel] if channel is not None else list(self._grant_timers)
        for name in channels:
            _cancel(self._grant_timers.pop(name, []))

    # ---- commands -------------------------------------------------------------------------

    def _rate_limit(self, bucket: TokenBucket, what: str) -> None:
        if bucket.take():
            self._refused_in_a_row = 0
            return
        self._refused_in_a_row += 1
        self.hub.count_limit_hit(what)
        if self._refused_in_a_row > self.hub.settings.max_refused_commands:
            self.disconnect(DisconnectCode.TOO_MANY_REQUESTS, "too many requests")
        raise CommandError(ErrorCode.TOO_MANY_REQUESTS, f"too many {what}: slow down")

    def charge_command(self) -> None:
        """Count one message a transport answers itself (a GraphQL ping) against the command
        rate; raises CommandError past it (and disconnects a client that keeps on)."""
        self._rate_limit(self._commands, "commands")

    async def handle(self, command: protocol.Command) -> None:
        """Run one command and queue its reply (or error reply)."""
        if self.state is State.CLOSED:
            return
        started = time.perf_counter()
        try:
            self._rate_limit(self._commands, "commands")
            if command.method in ("publish", "send"):
                self._rate_limit(self._publishes, "publications")
                if self.credentials.user:  # anonymous connections share no identity to limit by
                    self._rate_limit(self.hub.user_publish_bucket(self.credentials.user), "publications by this user")
            if command.error is not None:
                raise command.error
            handler = _HANDLERS.get(command.method)
            if handler is None:  # pragma: no cover - decode_frame only yields known methods
                raise CommandError(ErrorCode.METHOD_NOT_FOUND, f"unknown method {command.method!r}")
            if self.state is State.CONNECTING and command.method != "connect":
                raise CommandError(ErrorCode.NOT_CONNECTED, "send connect first")
            result = await handler(self, command)
            if result is not None:
                self._reply(command, result)
        except CommandError as error:
            self.outbox.push(protocol.encode_error(command.id, error))
        except Exception:
            # A fault we did not expect (a bug): answer, then end the connection, whose state may be
            # half-changed. The client reconnects and recovers from history (3004).
            log.exception("command %s of client %s failed", command.method, self.client_id, extra=self.log_context())
            self.outbox.push(protocol.encode_error(command.id, CommandError(ErrorCode.INTERNAL, "internal error")))
            self.disconnect(DisconnectCode.INTERNAL, "internal error")
        finally:
            if command.method in _HANDLERS:
                self.hub.stats.observe_command(command.method, time.perf_counter() - started)

    def log_context(self) -> dict[str, str]:
        """Fields structured logs attach to this session's lines."""
        return {"client": self.client_id, "user": self.credentials.user}

    def _reply(self, command: protocol.Command, result: protocol.Reply) -> None:
        self.outbox.push(protocol.encode_reply(command.id, command.method, result))

    def _authenticate(self, token: str | None) -> Credentials:
        if self._verifier is None:
            if token:
                raise CommandError(ErrorCode.UNAUTHORIZED, "server has no token secret (development mode): omit token")
            return ANONYMOUS
        if not token:
            if self.hub.anonymous_allowed:
                return ANONYMOUS
            raise CommandError(ErrorCode.UNAUTHORIZED, "token required")
        return self._verifier.verify(token)

    def _arm_expiry(self) -> protocol.RefreshResult:
        """Ask for a refresh `refresh_before` seconds ahead of exp; disconnect at exp."""
        expires_at = self.credentials.expires_at
        if expires_at is None:
            return protocol.RefreshResult()
        return self._schedule_expiry(expires_at, self._timers, self._ask_for_refresh, self._on_token_expired)

    def _schedule_expiry(
        self, expires_at: float, timers: list[Any], ask: Callable[[], None], expire: Callable[[], None]
    ) -> protocol.RefreshResult:
        remaining = max(0.0, expires_at - self._clock())
        refresh_before = self.hub.settings.refresh_before
        # Short-lived tokens are asked at half their life: asking at once would make a client
        # whose tokens all live less than refresh_before refresh in a tight loop.
        ask_at = remaining - refresh_before if remaining > 2 * refresh_before else remaining / 2
        timers.append(self._call_later(ask_at, ask))
        timers.append(self._call_later(remaining + 0.001, expire))
        return protocol.RefreshResult(expires=True, ttl=int(remaining))

    def _arm_grant(self, channel: str) -> protocol.RefreshResult:
        """A subscription token's expiry: ask for a new one ahead of it (sub_refresh), end it at exp."""
        self._cancel_grant_timers(channel)
        expires_at = self.grants.get(channel)
        if expires_at is None:
            return protocol.RefreshResult()
        timers = self._grant_timers[channel] = []
        return self._schedule_expiry(
            expires_at, timers, lambda: self._ask_for_sub_refresh(channel), lambda: self._on_grant_expired(channel)
        )

    def _ask_for_sub_refresh(self, channel: str) -> None:
        expires_at = self.grants.get(channel)
        if self.state is State.CONNECTED and channel in self.channels and expires_at is not None:
            self.outbox.push(protocol.encode_sub_refresh_push(channel, max(0, int(expires_at - self._clock()))))

    def _on_grant_expired(self, channel: str) -> None:
        """End the subscription (not the connection): a push says why, nothing of it follows."""
        expires_at = self.grants.get(channel)
        if self.state is not State.CONNECTED or expires_at is None or expires_at > self._clock():
            return
        self._forget_grant(channel)
        if channel not in self.channels:
            return
        self.outbox.push(
            protocol.encode_unsubscribe_push(channel, ErrorCode.TOKEN_EXPIRED, "subscription token expired")
        )
        self.hub.stop_delivery(self, channel)
        self._notify_unsubscribed(channel, "token expired")
        self.hub.spawn(self._finish_unsubscribe(channel), f"unsubscribing {self.client_id} from {channel}")

    def _forget_grant(self, channel: str) -> None:
        self.grants.pop(channel, None)
        self._cancel_grant_timers(channel)

    def _ask_for_refresh(self) -> None:
        expires_at = self.credentials.expires_at
        if self.state is not State.CONNECTED or expires_at is None:
            return
        if self._hook_authenticated:  # no token to ask the client for: the application extends it
            if self._app is not None and self._app.refreshes:
                self.hub.spawn(self._refresh_by_hook(self._app), f"refreshing {self.client_id}")
            return  # without a refresh hook it expires (3005); the reconnect asks the connect hook again
        self.outbox.push(protocol.encode_refresh_push(max(0, int(expires_at - self._clock()))))

    async def _refresh_by_hook(self, app: Application) -> None:
        credentials = self.credentials
        try:
            extended = await app.refresh(self.client_id, credentials)
        except CommandError as error:
            remaining = (credentials.expires_at or 0) - self._clock()
            if error.temporary and remaining > 1:  # the app may be back before exp: ask again halfway
                self._timers.append(self._call_later(remaining / 2, self._ask_for_refresh))
            elif not error.temporary:
                self.disconnect(DisconnectCode.CONNECT_REFUSED, error.message)
            return
        if self.state is not State.CONNECTED or self.credentials is not credentials:
            return
        self._cancel_timers()
        self._set_credentials(extended)
        self._arm_expiry()

    def _check(self, action: str, channel: str) -> NamespaceOptions:
        """Raise unless this connection may do `action` on `channel`; the channel's options."""
        options = self.hub.namespace(channel)
        permissions.check(
            action,
            options,
            channel,
            self.credentials,
            development_mode=self._development_mode,
            granted=channel in self.grants,
        )
        return options

    async def _connect(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.ConnectRequest)
        if self.state is State.CONNECTED:
            raise CommandError(ErrorCode.BAD_REQUEST, "already connected")
        app = self._app
        by_hook = app is not None and app.decides_connect
        by_hook = by_hook and (not request.token or self.hub.settings.connect_hook_always)
        try:
            if by_hook:
                assert app is not None
                credentials = await app.connect(self.client_id, request)
            else:
                credentials = self._authenticate(request.token)
        except CommandError as error:
            # Nothing else can happen on this connection: say why in the reply, then close with the
            # code that tells the client whether to retry (3005, 3014) or not (3500, 3505).
            code = _connect_close_code(error, by_hook)
            reason = error.message
            self._call_later(0, lambda: self.disconnect(code, reason))
            raise
        if self.state is State.CLOSED:  # closed while the hook was asked
            return protocol.Empty()
        limit = self.hub.settings.max_connections_per_user
        if credentials.user and limit is not None and self.hub.connections_of(credentials.user) >= limit:
            self.hub.count_limit_hit("connections_per_user")
            self._call_later(0, lambda: self.disconnect(DisconnectCode.CONNECTION_LIMIT, "too many connections"))
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, f"user has {limit} connections already")
        self._cancel_timers()
        self._set_credentials(credentials)
        self._hook_authenticated = by_hook
        self.state = State.CONNECTED
        self.hub.add_session(self)
        log.debug("connected", extra=self.log_context())
        expiry = self._arm_expiry()
        channels = list(dict.fromkeys(credentials.channels))
        if self.hub.settings.personal_channel and credentials.user:
            channels.append(f"{permissions.PERSONAL_NAMESPACE}:{credentials.user}")
        channels = list(dict.fromkeys(channels)) if self._server_subscriptions else []
        if channels:  # after this reply: each gets a subscribe push, then its publications
            self.hub.spawn(self._subscribe_server_side(channels, request.subs or {}), f"subscribing {self.client_id}")
        return protocol.ConnectResult(
            client=self.client_id,
            version=SERVER_VERSION,
            ping=self.hub.settings.ping_interval,
            expires=expiry.expires,
            ttl=expiry.ttl,
            subs=channels or None,
            refreshed_by_server=by_hook and expiry.expires,
        )

    def _set_credentials(self, credentials: Credentials) -> None:
        self.credentials = credentials
        info = Raw(protocol.encode(credentials.info)) if credentials.info is not None else protocol.NULL
        self.info = protocol.ClientInfo(user=credentials.user, client=self.client_id, info=info)

    async def _subscribe_server_side(
        self, channels: list[str], positions: Mapping[str, protocol.StreamPosition]
    ) -> None:
        for channel in channels:
            await self._server_subscribe(channel, positions.get(channel))

    async def _server_subscribe(self, channel: str, since: protocol.StreamPosition | None) -> None:
        """Subscribe because the server said so: no permission check; the push carries the position."""
        if self.state is not State.CONNECTED or channel in self.channels:
            return
        try:
            self.hub.namespace(channel)
            self._check_subscription_limit()
            await self.hub.subscribe(
                self, channel, since, lambda result: self.outbox.push(protocol.encode_subscribe_push(channel, result))
            )
        except CommandError as error:
            log.warning("server-side subscription of %s to %s failed: %s", self.client_id, channel, error.message)
            self.outbox.push(protocol.encode_unsubscribe_push(channel, int(error.code), error.message))

    def subscribe_by_server(self, channel: str) -> None:
        if self.state is State.CONNECTED and self._server_subscriptions:
            self.hub.spawn(self._server_subscribe(channel, None), f"subscribing {self.client_id} to {channel}")

    def unsubscribe_by_server(self, channel: str) -> None:
        if self.state is not State.CONNECTED or channel not in self.channels:
            return
        self._forget_grant(channel)
        self.outbox.push(
            protocol.encode_unsubscribe_push(channel, UNSUBSCRIBED_BY_SERVER, "unsubscribed by the server")
        )
        self.hub.stop_delivery(self, channel)
        self._notify_unsubscribed(channel, "server")
        self.hub.spawn(self._finish_unsubscribe(channel), f"unsubscribing {self.client_id} from {channel}")

    async def _finish_unsubscribe(self, channel: str) -> None:
        try:
            await self.hub.unsubscribe(self, channel)
        finally:
            self._channel_info.pop(channel, None)

    def info_in(self, channel: str) -> protocol.ClientInfo:
        return self._channel_info.get(channel, self.info)

    async def _refresh(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.RefreshRequest)
        credentials = self._authenticate(request.token)
        if credentials.user != self.credentials.user:
            raise CommandError(ErrorCode.PERMISSION_DENIED, "refresh token is for another user")
        self._cancel_timers()
        self.credentials = credentials
        return self._arm_expiry()

    async def _subscribe(self, command: protocol.Command) -> None:
        request = command.request
        assert isinstance(request, protocol.SubscribeRequest)
        channel = request.channel
        self.hub.namespace(channel)
        if channel in self.channels:
            raise CommandError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
        if request.token is not None:
            self.grants[channel] = self._verify_subscription_token(request.token, channel)
        try:
            app = self._app
            if app is not None and app.decides("subscribe", channel) and channel not in self.grants:
                self._check_subscription_limit()  # before asking: a refused subscribe costs the app nothing
                chan_info = await app.subscribe(self.client_id, self.credentials, channel, request.data)
                if chan_info is not None:  # the application decides, not the rules
                    self._channel_info[channel] = protocol.ClientInfo(
                        user=self.user, client=self.client_id, info=self.info.info, chan_info=chan_info
                    )
                if channel in self.channels:  # the server subscribed it meanwhile
                    raise CommandError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
            else:
                self._check("subscribe", channel)
                self._check_subscription_limit()
            replied = False

            def reply(result: protocol.SubscribeResult) -> None:
                nonlocal replied
                replied = True
                expires_at = self.grants.get(channel)
                if expires_at is not None:  # the result may be shared: a copy with the token's expiry
                    ttl = max(0, int(expires_at - self._clock()))
                    result = msgspec.structs.replace(result, expires=True, ttl=ttl)
                self._reply(command, result)

            await self.hub.subscribe(self, channel, request.since, reply)
            if not replied and self.state is State.CONNECTED:  # the server ended it before it began
                raise CommandError(ErrorCode.NOT_SUBSCRIBED, f"the server ended the subscription to {channel!r}")
        except BaseException:
            self._forget_grant(channel)  # a grant lives only as long as its subscription
            if channel not in self.channels:
                self._channel_info.pop(channel, None)
            raise
        if channel not in self.channels:
            self._forget_grant(channel)
            self._channel_info.pop(channel, None)
        elif request.token is not None:
            self._arm_grant(channel)

    def _check_subscription_limit(self) -> None:
        if len(self.channels) >= self.hub.settings.max_channels_per_connection:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions on this connection")

    def _verify_subscription_token(self, token: str, channel: str) -> float | None:
        if self._verifier is None:
            raise CommandError(ErrorCode.UNAUTHORIZED, "server has no token key (development mode): omit token")
        return self._verifier.verify_subscription(token, self.user, channel)

    async def _sub_refresh(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.SubRefreshRequest)
        channel = request.channel
        self.hub.namespace(channel)
        if channel not in self.channels:
            raise CommandError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel!r}")
        if channel not in self.grants:
            raise CommandError(ErrorCode.BAD_REQUEST, f"{channel!r} was subscribed without a token: nothing to refresh")
        self.grants[channel] = self._verify_subscription_token(request.token, channel)
        return self._arm_grant(channel)

    async def _unsubscribe(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.UnsubscribeRequest)
        self.hub.namespace(request.channel)
        if request.channel not in self.channels:
            raise CommandError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {request.channel!r}")
        self._forget_grant(request.channel)
        self._notify_unsubscribed(request.channel, "client")
        await self._finish_unsubscribe(request.channel)
        return protocol.Empty()

    async def _publish(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.PublishRequest)
        channel, data = request.channel, request.data
        app = self._app if self._app is not None and self._app.decides("publish", channel) else None
        options = self.hub.namespace(channel) if app is not None else self._check("publish", channel)
        if options.publish_rate is not None:  # before the hook: a typing flood never reaches the app
            self._rate_limit(self._namespace_bucket(channel, options), "publications in this namespace")
        if app is not None:  # the application decides, not the rules, and may replace the data
            data = await app.publish(self.client_id, self.credentials, channel, data)
        return await self.hub.publish(channel, data, self.info_in(channel))

    async def _rpc(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.RpcRequest)
        if self._app is None:
            raise CommandError(ErrorCode.NOT_AVAILABLE, "rpc is not available: the application has no rpc hook")
        return protocol.RpcResult(data=await self._app.rpc(self.client_id, self.credentials, request))

    def _namespace_bucket(self, channel: str, options: NamespaceOptions) -> TokenBucket:
        """Per-connection budget of a namespace with its own publish_rate (typing signals)."""
        namespace = namespace_of(channel)
        bucket = self._namespace_publishes.get(namespace)
        if bucket is None:
            bucket = self._namespace_publishes[namespace] = TokenBucket(options.publish_rate, options.publish_burst)
        return bucket

    async def _history(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.HistoryRequest)
        self._check("read_history", request.channel)
        return await self.hub.history(request.channel, request.since, request.limit, request.reverse)

    async def _presence(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.PresenceRequest)
        self._check("read_presence", request.channel)
        return await self.hub.presence(request.channel)

    async def _presence_stats(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.PresenceRequest)
        self._check("read_presence", request.channel)
        clients = (await self.hub.presence(request.channel)).clients
        users = {info.user for info in clients.values()}
        return protocol.PresenceStatsResult(num_clients=len(clients), num_users=len(users))

    async def _send(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.SendRequest)
        if not request.user or len(request.user.encode()) > MAX_USER_BYTES:
            raise CommandError(ErrorCode.BAD_REQUEST, f"send needs a user id of 1 to {MAX_USER_BYTES} bytes")
        if self.credentials.anonymous and self._verifier is not None:
            raise CommandError(ErrorCode.PERMISSION_DENIED, "permission denied: send needs a token")
        await self.hub.send_to_user(request.user, request.data, self.info)
        return protocol.Empty()

    async def _ping(self, command: protocol.Command) -> protocol.Reply:
        return protocol.Empty()

    def _reader(self) -> str:
        """Read positions belong to a user: an anonymous connection has none to keep."""
        if self.credentials.anonymous:
            raise CommandError(ErrorCode.PERMISSION_DENIED, "permission denied: read positions need a user (a token)")
        return self.credentials.user

    async def _mark_read(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.MarkReadRequest)
        user = self._reader()
        self._check("read_history", request.channel)
        return protocol.MarkReadResult(offset=await self.hub.mark_read(user, request.channel, request.offset))

    async def _read_positions(self, command: protocol.Command) -> protocol.Reply:
        request = command.request
        assert isinstance(request, protocol.ReadPositionsRequest)
        user = self._reader()
        if len(request.channels) > self.hub.settings.max_channels_per_connection:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, "too many channels in one read_positions")
        for channel in request.channels:
            self._check("read_history", channel)
        return await self.hub.read_positions(user, request.channels)


# A module constant, not a class attribute, so the class can be compiled (docs/compiled.md).
_HANDLERS: Final[dict[str, Callable[[Session, protocol.Command], Awaitable[protocol.Reply | None]]]] = {
    "connect": Session._connect,
    "refresh": Session._refresh,
    "sub_refresh": Session._sub_refresh,
    "subscribe": Session._subscribe,
    "unsubscribe": Session._unsubscribe,
    "publish": Session._publish,
    "history": Session._history,
    "presence": Session._presence,
    "presence_stats": Session._presence_stats,
    "send": Session._send,
    "ping": Session._ping,
    "mark_read": Session._mark_read,
    "read_positions": Session._read_positions,
    "rpc": Session._rpc,
}


UNSUBSCRIBED_BY_SERVER: Final = 0  # the unsubscribe push's code when the server API or the application ended it


def _connect_close_code(error: CommandError, by_hook: bool) -> int:
    if error.code is ErrorCode.TOKEN_EXPIRED:
        return DisconnectCode.TOKEN_EXPIRED
    if not by_hook:
        return DisconnectCode.INVALID_TOKEN
    return DisconnectCode.APPLICATION_UNAVAILABLE if error.temporary else DisconnectCode.CONNECT_REFUSED


def _cancel(timers: list[Any]) -> None:
    for timer in timers:
        cancel = getattr(timer, "cancel", None)
        if cancel is not None:
            cancel()
    timers.clear()
