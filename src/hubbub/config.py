"""Settings: one frozen table with documented defaults, loaded in one explicit step.

Sources, highest precedence first: command-line flags, the TOML file named by
`--config`, then `HUBBUB_*` environment variables, then the defaults below. Unknown keys
and bad values raise ConfigError naming the key. Limits accept the string "none" to
disable them where the table says so.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from hubbub.errors import ConfigError

__all__ = ["NamespaceOptions", "Settings", "load_settings"]

ENV_PREFIX = "HUBBUB_"
NAMESPACE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DEFAULT_NAMESPACE = "default"


PERMISSIONS = ("anyone", "authenticated", "members", "owner", "token", "server")


@dataclass(frozen=True)
class NamespaceOptions:
    """Rules for every channel `ns:name` of one namespace (channels without `:` use `default`).

    Permissions (who may subscribe, publish, read history, read presence) take one of
    PERMISSIONS; docs/security.md explains each.
    """

    history_size: int = field(default=0, metadata={"help": "publications kept per channel; 0 = no history"})
    history_ttl: float = field(default=300.0, metadata={"help": "seconds a publication stays in history"})
    presence: bool = field(default=False, metadata={"help": "track who is subscribed"})
    join_leave: bool = field(default=False, metadata={"help": "push join/leave events to subscribers"})
    conflate: bool = field(default=False, metadata={"help": "slow readers get the newest message only"})
    allow_anonymous: bool = field(
        default=False, metadata={"help": "clients without a token may use it (always, in development mode)"}
    )
    subscribe: str = field(default="anyone", metadata={"help": "who may subscribe"})
    publish: str = field(default="server", metadata={"help": "who may publish from a client; server = API only"})
    read_history: str = field(default="anyone", metadata={"help": "who may read history"})
    read_presence: str = field(default="anyone", metadata={"help": "who may read presence"})
    publish_rate: float | None = field(
        default=None,
        metadata={"help": "client publications per second per connection in this namespace (on top of publish_rate)"},
    )
    publish_burst: int = field(
        default=1, metadata={"help": "with publish_rate: publications a connection may send at once"}
    )
    subscribe_hook_url: str | None = field(
        default=None, metadata={"help": 'this namespace\'s subscribe hook URL; "" = none here; unset = the global one'}
    )
    publish_hook_url: str | None = field(
        default=None, metadata={"help": 'this namespace\'s publish hook URL; "" = none here; unset = the global one'}
    )

    @property
    def keeps_history(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


DAY = 86400.0
TYPING_RATE = 0.5  # signals per second: the chat sends one every 2 s while someone types
TYPING_BURST = 3  # and one at once when typing resumes after a message was sent


def _default_namespaces() -> dict[str, NamespaceOptions]:
    """The embedded set: `default` for trying things, and what the chat page (/chat) uses."""
    signed_in = NamespaceOptions(subscribe="authenticated", publish="authenticated", read_history="authenticated")
    return {
        DEFAULT_NAMESPACE: NamespaceOptions(history_size=100, history_ttl=3600.0, presence=True, publish="anyone"),
        # chat rooms: room:lobby
        "room": dataclasses.replace(
            signed_in,
            history_size=1000,
            history_ttl=7 * DAY,
            presence=True,
            join_leave=True,
            read_presence="authenticated",
        ),
        # the list of rooms, one publication per room created: rooms:index
        "rooms": dataclasses.replace(signed_in, history_size=1000, history_ttl=30 * DAY),
        # direct messages between the users named: dm:alice,bob
        "dm": NamespaceOptions(
            history_size=1000,
            history_ttl=30 * DAY,
            subscribe="members",
            publish="members",
            read_history="members",
            read_presence="members",
        ),
        # typing indicators in rooms: ephemeral, never in history, one signal per 2 s (burst 3): typing:lobby
        "typing": NamespaceOptions(
            subscribe="authenticated", publish="authenticated", publish_rate=TYPING_RATE, publish_burst=TYPING_BURST
        ),
        # typing indicators in direct messages, seen only by the two members: dm-typing:alice,bob
        "dm-typing": NamespaceOptions(
            subscribe="members",
            publish="members",
            read_presence="members",
            read_history="members",
            publish_rate=TYPING_RATE,
            publish_burst=TYPING_BURST,
        ),
        # live data: slow readers get the newest value, every reader starts from a snapshot
        "ticker": NamespaceOptions(history_size=1, history_ttl=DAY, conflate=True, allow_anonymous=True),
        "scores": NamespaceOptions(history_size=1, history_ttl=DAY, conflate=True, allow_anonymous=True),
        # personal inboxes: anyone signed in may drop a note, only the owner reads (user:alice)
        "user": NamespaceOptions(history_size=100, history_ttl=30 * DAY, publish="authenticated", subscribe="owner"),
    }


def _setting(default: Any, help: str, *, flag: bool = True) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


def _secret(help: str) -> Any:
    """A secret: left out of repr(), so logging Settings never shows it."""
    return field(default=None, repr=False, metadata={"help": help, "flag": True, "secret": True})


@dataclass(frozen=True)
class Settings:
    """Every setting of `hubbub serve`. `None` disables a limit where its type allows it."""

    host: str = _setting("127.0.0.1", "public interface (WebSocket, pages)")
    port: int = _setting(8000, "public port; 0 picks a free one")
    listen_public: bool = _setting(
        True, "listen on host:port for WebSocket clients and pages; off when only a mount (ASGI, aiohttp) serves them"
    )
    api_host: str = _setting("127.0.0.1", "internal interface (server API, health)")
    api_port: int = _setting(8001, "internal port; 0 picks a free one")
    token_secret: str | None = _secret("HS256 secret for JWTs (32+ bytes); no token key at all = development mode")
    token_public_key: str | None = _setting(None, "PEM file with the RSA or EC public key for RS256/ES256 JWTs")
    token_jwks: str | None = _setting(None, "JWKS file with public keys (RS256/ES256), chosen by the token's kid")
    token_audience: str | None = _setting(None, "required `aud` claim of tokens")
    token_issuer: str | None = _setting(None, "required `iss` claim of tokens")
    refresh_before: float = _setting(25.0, "seconds before a token's exp that the server asks for a refresh")
    insecure: bool = _setting(False, "allow a non-loopback host without any token key (never in production)")
    dev: bool = _setting(
        False, "development tokens: GET /dev/token?user=NAME mints one (makes a token_secret if none is set)"
    )
    tls_cert: str | None = _setting(None, "PEM certificate chain: serve wss:// and https:// on the public port")
    tls_key: str | None = _setting(None, "PEM private key of tls_cert")
    allowed_origins: str | None = _setting(
        None, "comma-separated Origins allowed to open WebSockets; unset = same host"
    )
    api_key: str | None = _secret("key for the HTTP API; unset = loopback clients only")
    admin_key: str | None = _secret("key for admin actions (/api/disconnect); unset = api_key rules")
    history_path: str | None = _setting("hubbub-history.db", "SQLite history file; none = in memory")
    history_commit_interval: float = _setting(
        0.05,
        "seconds the SQLite writer gathers appended publications before it commits them together "
        "(reads, sync and close commit at once; a killed process loses at most this much, and its "
        "epochs change); 0 = every loop turn, several times the CPU per publication",
    )
    broker: str = _setting(
        "memory",
        "memory (one process), redis://HOST:PORT/DB, or redis-cluster://HOST:PORT[,HOST:PORT...] (seed nodes); "
        "history and presence go there too",
    )
    redis_prefix: str = _setting("hubbub", "prefix of every Redis key and pub/sub channel")
    presence_ttl: float = _setting(60.0, "seconds a node's presence entries outlive its last refresh (Redis)")
    redis_max_connections: int = _setting(64, "connections each Redis client (broker, history, presence) may open")
    redis_pool_timeout: float | None = _setting(
        10.0, "seconds a Redis command waits for a free pooled connection before it fails"
    )
    redis_connect_timeout: float | None = _setting(5.0, "seconds to open a connection to Redis")
    redis_socket_timeout: float | None = _setting(10.0, "seconds a Redis command may wait for its answer")
    redis_health_check_interval: float = _setting(15.0, "seconds idle before a pooled Redis connection is checked")
    redis_wait_replicas: int = _setting(
        0, "replicas that must hold a publication (WAIT) before it is acknowledged; 0 = the master alone"
    )
    redis_wait_timeout: float = _setting(
        1.0, "seconds a publish waits for redis_wait_replicas; fewer by then: error 100 (temporary)"
    )
    broker_heartbeat_interval: float | None = _setting(
        2.0, "seconds between a node's heartbeats to itself over Redis (and its delivery checks); none = neither"
    )
    broker_heartbeat_timeout: float = _setting(
        10.0, "seconds without hearing its heartbeat before a node resubscribes and recovers (not ready meanwhile)"
    )
    workers: int = _setting(1, "processes serving the same ports (SO_REUSEPORT); more than 1 needs a Redis broker")
    reuse_port: bool = _setting(False, "bind with SO_REUSEPORT (set for each of the --workers processes)")
    ping_interval: float | None = _setting(25.0, "seconds between server pings (and SSE and HTTP-stream keep-alives)")
    ping_timeout: float | None = _setting(10.0, "seconds to wait for a pong before closing")
    handshake_timeout: float | None = _setting(10.0, "seconds to complete the WebSocket handshake")
    close_timeout: float | None = _setting(
        10.0, "seconds a client gets to answer our close frame before the socket is dropped; none = wait"
    )
    max_request_head_bytes: int = _setting(
        16384, "largest HTTP upgrade request head (line and headers); larger gets 431"
    )
    connect_timeout: float | None = _setting(10.0, "seconds a client has to send connect")
    command_rate: float | None = _setting(50.0, "commands per second per connection (token bucket)")
    command_burst: int = _setting(100, "commands a connection may send at once")
    publish_rate: float | None = _setting(20.0, "publish and send commands per second per connection")
    publish_burst: int = _setting(40, "publish and send commands a connection may send at once")
    user_publish_rate: float | None = _setting(
        40.0, "publish and send commands per second per user id, shared by its connections on a node"
    )
    user_publish_burst: int = _setting(80, "publish and send commands one user's connections may send at once")
    max_refused_commands: int = _setting(50, "rate-limited commands in a row before the connection is closed (3013)")
    connect_rate_per_ip: float | None = _setting(20.0, "WebSocket connection attempts per second per IP")
    connect_burst_per_ip: int = _setting(100, "connection attempts one IP may make at once")
    max_connections_per_ip: int | None = _setting(1000, "open WebSocket connections per IP")
    max_connections_per_user: int | None = _setting(100, "open connections per user id")
    compression: bool = _setting(False, "negotiate permessage-deflate with clients that offer it")
    tcp_fastopen: int = _setting(
        0, "TCP Fast Open queue on the public port (Linux; needs net.ipv4.tcp_fastopen & 2); 0 = off"
    )
    compression_threshold: int = _setting(512, "with compression: frames of fewer bytes are sent uncompressed")
    test_echo_endpoint: bool = _setting(False, "TEST ONLY: serve an echo WebSocket at /echo (conformance suite)")
    max_message_bytes: int | None = _setting(65536, "largest incoming frame; larger closes with 1009")
    max_publication_bytes: int | None = _setting(
        65536, "largest publication data (and message to a user) on every path in; larger gets error 106"
    )
    max_outbox_bytes: int | None = _setting(
        1048576, "bytes queued per connection before it is cut as slow (3008); none = never cut (unbounded)"
    )
    max_queued_messages: int = _setting(
        16, "incoming messages waiting per connection before the server stops reading it"
    )
    flush_slice: int = _setting(512, "connections one flush writes before it lets the event loop run (big fan-outs)")
    max_publish_batch: int = _setting(1000, "publications one /api/batch request may carry")
    max_batch_bytes: int = _setting(65536, "largest frame the server builds when coalescing messages")
    idempotency_window: float = _setting(
        300.0, "seconds an API call's idempotency_key is remembered: a retry within it gets the first result"
    )
    idempotency_max_keys: int = _setting(
        100000, "idempotency keys one node keeps in memory (memory broker); past it the oldest go first"
    )
    max_channels_per_connection: int = _setting(128, "subscriptions one connection may hold")
    stream_send_rate_per_ip: float | None = _setting(
        200.0, "HTTP-streaming command POSTs per second per IP (/connection/stream/send)"
    )
    stream_send_burst_per_ip: int = _setting(400, "HTTP-streaming command POSTs one IP may make at once")
    stream_reorder_timeout: float = _setting(
        5.0, "seconds an HTTP stream waits for an overtaken command POST before it reconnects the client (3011)"
    )
    sse_retry: float = _setting(
        2.0, "seconds an EventSource waits before it reconnects (sent as `retry:`, jittered by half either way)"
    )
    graphql_schema: str | None = _setting(
        None, 'GraphQL schema to serve on graphql_path, as "package.module:attribute" (needs hubbub[graphql])'
    )
    graphql_path: str = _setting("/graphql", "public-port path of GraphQL over WebSocket (graphql-transport-ws)")
    centrifugo_path: str = _setting(
        "/connection/centrifugo",
        "public-port path where Centrifugo's SDKs connect (its JSON and Protobuf protocol); empty: not served",
    )
    graphql_init_timeout: float = _setting(
        10.0, "seconds a GraphQL client has to send connection_init after the upgrade (else close 4408)"
    )
    graphql_resolve_timeout: float = _setting(
        10.0, "seconds a GraphQL subscription's resolver may take to name its channel (else error RESOLVER_TIMEOUT)"
    )
    graphql_max_operations: int = _setting(100, "GraphQL operations one connection may run at once")
    graphql_max_document_bytes: int = _setting(16384, "longest GraphQL document (query text) accepted")
    graphql_max_depth: int = _setting(12, "deepest field nesting a GraphQL document may have")
    graphql_max_aliases: int = _setting(30, "aliases one GraphQL document may use")
    graphql_max_complexity: int = _setting(
        1000, "fields one GraphQL operation may select, counted with its fragments expanded"
    )
    graphql_document_cache_size: int = _setting(
        1000, "parsed and validated GraphQL documents kept, by query text (least recently used go first)"
    )
    max_channel_name_bytes: int = _setting(255, "longest channel name")
    recovery_max_publications: int = _setting(300, "most publications a recovery may replay")
    history_max_limit: int = _setting(1000, "most publications one history request returns")
    connect_hook_url: str | None = _setting(
        None, "POST each connect without a token here; the app answers who the client is (docs/integration.md)"
    )
    connect_hook_always: bool = _setting(False, "call the connect hook for connects with a token too")
    refresh_hook_url: str | None = _setting(None, "POST here to extend a hook-authenticated connection")
    subscribe_hook_url: str | None = _setting(None, "POST each client subscribe here: the app allows or refuses")
    publish_hook_url: str | None = _setting(
        None, "POST each client publish here: the app allows, refuses or replaces the data"
    )
    rpc_hook_url: str | None = _setting(None, "POST each client rpc command here: the app answers it")
    disconnect_hook_url: str | None = _setting(None, "POST here when a connection closes (at least once)")
    unsubscribe_hook_url: str | None = _setting(None, "POST here when a subscription ends (at least once)")
    hook_timeout: float | None = _setting(1.0, "seconds an application hook may take to answer")
    hook_concurrency: int = _setting(64, "hook calls in flight at once per node; more wait (within hook_timeout)")
    hook_forward_headers: str = _setting(
        "Cookie,Authorization", "comma-separated upgrade request headers the connect hook receives"
    )
    hook_notify_attempts: int = _setting(5, "tries of a disconnect or unsubscribe notification before it is dropped")
    hook_notify_max_pending: int = _setting(
        10000, "notifications pending (waiting, in flight, retrying) per node; past it new ones are dropped and counted"
    )
    personal_channel: bool = _setting(
        False, "subscribe every named user's connections to their channel user:USER (server-side)"
    )
    shutdown_timeout: float = _setting(10.0, "seconds to drain connections on SIGINT/SIGTERM")
    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting("text", "text (human) or json (one object per line)")
    event_loop: str = _setting("auto", "auto (uvloop when installed), uvloop (needs the uvloop package) or asyncio")
    admin_interval: float = _setting(1.0, "seconds between the admin view's samples")
    namespaces: Mapping[str, NamespaceOptions] = field(
        default_factory=_default_namespaces,
        metadata={"help": 'per-namespace rules; as JSON in flag/env: {"chat": {"presence": true}}'},
    )

    @property
    def development_mode(self) -> bool:
        """With no token key and no connect hook, anonymous clients may connect and use every namespace."""
        return (
            self.token_secret is None
            and self.token_public_key is None
            and self.token_jwks is None
            and not self.dev
            and self.connect_hook_url is None
        )

    def secrets(self) -> list[str]:
        """Configured secret values, for redaction."""
        return [value for value in (self.token_secret, self.api_key, self.admin_key) if value]

    def namespace(self, name: str) -> NamespaceOptions | None:
        return self.namespaces.get(name)


def is_switch(setting: dataclasses.Field[Any]) -> bool:
    """A plain on/off setting: a switch on the command line (`--dev`, `--no-dev`)."""
    return _HINTS[setting.name] is bool


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The settings that have a flag and an environment variable."""
    return [f for f in dataclasses.fields(Settings) if f.metadata.get("flag", True)]


_HINTS: dict[str, Any] = get_type_hints(Settings)
_NS_HINTS: dict[str, Any] = get_type_hints(NamespaceOptions)


def _is_optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _base_type(hint: Any) -> Any:
    if _is_optional(hint):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn a raw value (string from flag/env, or TOML value) into the setting's type."""
    if isinstance(value, str) and value.strip().lower() == "none" and _is_optional(hint):
        return None
    base = _base_type(hint)
    result: int | float
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            result = int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            result = float(value)
        elif base is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        else:  # pragma: no cover - every setting has one of the types above
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r}: {value!r} is not a valid {base.__name__}") from None
    if result < 0:
        raise ConfigError(f"setting {key!r}: {value!r} must not be negative")
    return result


def _namespaces_from(raw: Any) -> dict[str, NamespaceOptions]:
    if isinstance(raw, str):  # from a flag or the environment
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"setting 'namespaces' is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("setting 'namespaces' must be a table of tables")
    result = {}
    for name, options in raw.items():
        if not NAMESPACE_NAME.match(name):
            raise ConfigError(f"namespace {name!r}: names use letters, digits, '_' and '-' (1-64)")
        if not isinstance(options, dict):
            raise ConfigError(f"namespace {name!r} must be a table")
        values = {}
        for key, value in options.items():
            if key not in _NS_HINTS:
                raise ConfigError(f"unknown setting 'namespaces.{name}.{key}'")
            values[key] = coerce(f"namespaces.{name}.{key}", _NS_HINTS[key], value)
            if key in ("subscribe", "publish", "read_history", "read_presence") and value not in PERMISSIONS:
                raise ConfigError(
                    f"setting 'namespaces.{name}.{key}': {value!r} is not one of {', '.join(PERMISSIONS)}"
                )
        result[name] = NamespaceOptions(**values)
    return result


MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2: an HS256 key at least as long as the hash


def _validate(values: dict[str, Any]) -> None:
    secret = values.get("token_secret")
    if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"setting 'token_secret' must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2)")
    log_format = values.get("log_format")
    if log_format is not None and log_format not in ("text", "json"):
        raise ConfigError(f"setting 'log_format': {log_format!r} is not one of text, json")
    loop = values.get("event_loop")
    if loop is not None and loop not in ("asyncio", "uvloop", "auto"):
        raise ConfigError(f"setting 'event_loop': {loop!r} is not one of asyncio, uvloop, auto")
    level = values.get("log_level")
    if level is not None and level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"setting 'log_level': {level!r} is not one of debug, info, warning, error")


def from_mapping(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check and coerce a table of settings (from TOML or tests)."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "namespaces":
            values[key] = _namespaces_from(value)
        elif key in _HINTS:
            values[key] = coerce(key, _HINTS[key], value)
        else:
            raise ConfigError(f"unknown setting {key!r} in {source}")
    _validate(values)
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    names = {f.name for f in setting_fields()}
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        key = variable[len(ENV_PREFIX) :].lower()
        if key not in names:
            raise ConfigError(f"unknown setting {key!r} from environment variable {variable}")
        values[key] = _namespaces_from(value) if key == "namespaces" else coerce(key, _HINTS[key], value)
    _validate(values)
    return values


def from_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return from_mapping(raw, str(path))


def load(
    flags: Mapping[str, Any] | None = None,
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < environment < TOML file < flags into Settings."""
    values: dict[str, Any] = {}
    if environ is not None:
        values.update(from_environment(environ))
    if config_path is not None:
        values.update(from_toml(config_path))
    if flags:
        values.update(from_mapping({k: v for k, v in flags.items() if v is not None}, "command-line flags"))
    settings = Settings(**values)
    check_settings(settings)
    return settings


load_settings = load  # the name the package exports: `hubbub.load_settings`


def check_settings(settings: Settings) -> None:
    """Rules that span several settings; raise ConfigError naming them."""
    schemes = ("redis://", "rediss://", "unix://", "redis-cluster://")
    if settings.broker != "memory" and not settings.broker.startswith(schemes):
        raise ConfigError(
            f"setting 'broker': {settings.broker!r} is not 'memory', a redis:// URL or redis-cluster://HOST:PORT,..."
        )
    if settings.workers < 1:
        raise ConfigError("setting 'workers' must be at least 1")
    if settings.workers > 1 and settings.broker == "memory":
        raise ConfigError(
            "setting 'workers' > 1 needs a Redis broker (--broker redis://HOST:PORT/DB): worker processes share"
            " publications, history and presence only through it"
        )
    if settings.workers > 1 and 0 in (settings.port, settings.api_port):
        raise ConfigError("setting 'workers' > 1 needs fixed ports: every worker binds the same 'port' and 'api_port'")
    if settings.personal_channel and "user" not in settings.namespaces:
        raise ConfigError("setting 'personal_channel' subscribes users to user:USER: configure the 'user' namespace")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("settings 'tls_cert' and 'tls_key' go together: set both or neither")
    if not settings.graphql_path.startswith("/") or "?" in settings.graphql_path:
        raise ConfigError(f"setting 'graphql_path': {settings.graphql_path!r} must be a path such as /graphql")
    centrifugo_path = settings.centrifugo_path
    if centrifugo_path and (not centrifugo_path.startswith("/") or "?" in centrifugo_path):
        raise ConfigError(
            f"setting 'centrifugo_path': {centrifugo_path!r} must be a path such as /connection/centrifugo (or empty)"
        )
    if centrifugo_path in (settings.graphql_path, "/connection/websocket"):
        raise ConfigError(f"setting 'centrifugo_path': {centrifugo_path!r} is taken by another endpoint")
    if settings.dev and not settings.insecure and not _is_loopback_host(settings.host):
        raise ConfigError(
            f"setting 'dev' gives anyone a token for any user name; refusing it on host {settings.host!r}"
            " (not loopback). Pass --insecure to accept that"
        )
    if settings.development_mode and not settings.insecure:
        for key in ("host",):
            if not _is_loopback_host(getattr(settings, key)):
                raise ConfigError(
                    f"setting {key!r} is {getattr(settings, key)!r}, not loopback, and no token key is set"
                    " (token_secret, token_public_key or token_jwks): anyone could connect. Set a key, or"
                    " pass --insecure to accept that"
                )


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
