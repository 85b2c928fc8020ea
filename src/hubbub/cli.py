"""`hubbub` command line: a thin shell over Settings, Server and Client.

Flags of `serve` are derived from the Settings table, so a new setting gets its flag,
its HUBBUB_* variable and its TOML key at once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hubbub import __version__, config
from hubbub.compiled import build_kind
from hubbub.errors import ConfigError, HubbubError
from hubbub.logs import configure_logging

DEFAULT_API_URL = "http://127.0.0.1:8001"
DEFAULT_WS_URL = "ws://127.0.0.1:8000"


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; booleans are switches (`--dev` / `--no-dev`), as in TOML they are true/false."""
    for field in config.setting_fields():
        flag = "--" + field.name.replace("_", "-")
        if field.default is dataclasses.MISSING:
            default_text = "built in"
        elif isinstance(field.default, bool):
            default_text = str(field.default).lower()
        else:
            default_text = field.default if field.default is not None else "none"
        help_text = f"{field.metadata['help']} (default: {default_text}; env {config.ENV_PREFIX}{field.name.upper()})"
        if config.is_switch(field):
            parser.add_argument(
                flag, dest=field.name, default=None, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag, dest=field.name, default=None, metavar="VALUE", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbub", description="Real-time messaging server and tools.")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__} ({build_kind()})")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")
    _add_setting_flags(serve)

    publish = commands.add_parser("publish", help="publish JSON to a channel through the HTTP API")
    publish.add_argument("channel")
    publish.add_argument("data", help='JSON value, e.g. \'{"text": "hi"}\'')
    publish.add_argument("--url", default=DEFAULT_API_URL, help=f"server API URL (default: {DEFAULT_API_URL})")
    publish.add_argument("--api-key", default=os.environ.get("HUBBUB_API_KEY"), help="API key")

    subscribe = commands.add_parser("subscribe", help="print a channel's publications as JSON lines")
    subscribe.add_argument("channel")
    subscribe.add_argument("--url", default=DEFAULT_WS_URL, help=f"server URL (default: {DEFAULT_WS_URL})")
    subscribe.add_argument("--token", help="connection JWT")
    subscribe.add_argument("--since", type=int, metavar="OFFSET", help="first replay publications after OFFSET")
    subscribe.add_argument("--epoch", help="epoch of --since (default: the stream's current epoch)")

    top = commands.add_parser("top", help="live connections, channels and rates of a running server")
    top.add_argument("--url", default=DEFAULT_API_URL, help=f"server API URL (default: {DEFAULT_API_URL})")
    top.add_argument(
        "--key",
        default=os.environ.get("HUBBUB_ADMIN_KEY") or os.environ.get("HUBBUB_API_KEY") or "",
        help="admin key (default: HUBBUB_ADMIN_KEY, then HUBBUB_API_KEY)",
    )
    top.add_argument("--count", type=int, help="stop after this many updates (default: run until Ctrl-C)")

    demo = commands.add_parser("demo", help="demo feeds for a running server")
    demos = demo.add_subparsers(dest="demo", required=True)
    ticker = demos.add_parser("ticker", help="simulated prices and sports scores (open /ticker to watch)")
    ticker.add_argument("--url", default=DEFAULT_API_URL, help=f"server API URL (default: {DEFAULT_API_URL})")
    ticker.add_argument("--api-key", default=os.environ.get("HUBBUB_API_KEY"), help="API key")
    ticker.add_argument("--symbols", type=int, default=50, help="how many symbols (default: 50)")
    ticker.add_argument("--rate", type=float, default=200.0, help="price updates per second in all (default: 200)")
    ticker.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")

    token = commands.add_parser("token", help="mint a development JWT with the configured secret")
    token.add_argument("user")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until it expires (default: 3600)")
    token.add_argument("--secret", help="HS256 secret (default: token_secret from --config or HUBBUB_TOKEN_SECRET)")
    token.add_argument("--config", metavar="FILE", help="TOML settings file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("publish", "subscribe", "top", "demo"):
        # Ctrl-C stops a client command even when started where SIGINT is ignored (a shell's
        # background job): Python then leaves it ignored instead of raising KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "publish":
            return asyncio.run(_publish(args))
        if args.command == "subscribe":
            return asyncio.run(_subscribe(args))
        if args.command == "token":
            return _token(args)
        if args.command == "top":
            return asyncio.run(_top(args))
        if args.command == "demo":
            return asyncio.run(_demo(args))
    except HubbubError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # aiohttp's connection errors are OSErrors too: no server there
        print(f"hubbub: cannot reach the server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


def _serve(args: argparse.Namespace) -> int:
    flags = {field.name: getattr(args, field.name) for field in config.setting_fields()}
    settings = config.load(flags, args.config, os.environ)
    configure_logging(settings)
    if settings.workers > 1:
        return _run_workers(settings)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        return runner.run(_run_server(settings))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `event_loop` asks for; None = asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise HubbubError("setting 'event_loop' is uvloop but the uvloop package is not installed") from None
        return None
    return uvloop.new_event_loop


GC_YOUNG_THRESHOLD = 7000  # CPython's default is 700


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic-GC passes for a server holding thousands of long-lived connections.

    With CPython's defaults the collector ran about 340 times while 5,000 clients connected and
    took ~12% of that time, two full passes included (docs/benchmarks.md). Objects made at start-up
    (modules, settings, the hub) are moved out of its view (`gc.freeze`), and young-generation
    passes run every 7,000 allocations instead of 700: garbage cycles (a closed connection and its
    session) live a little longer, memory stays bounded.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _run_workers(settings: config.Settings) -> int:
    """Start `workers` copies of this command on the same ports (SO_REUSEPORT); the kernel spreads
    new connections over them. Signals are passed on; the exit status is the worst of theirs."""
    import subprocess

    command = [sys.executable, "-m", "hubbub", *sys.argv[1:], "--workers", "1", "--reuse-port"]
    children = [subprocess.Popen(command) for _ in range(settings.workers)]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)  # the processes this command started, by handle

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    print(f"hubbub: {settings.workers} workers on port {settings.port} (API {settings.api_port})", flush=True)
    return max(child.wait() for child in children)


async def _run_server(settings: config.Settings) -> int:
    from hubbub.server import Server

    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"hubbub: cannot listen: {exc}", file=sys.stderr)
        await server.close()
        return 1
    tune_garbage_collector()
    if settings.listen_public:
        print(f"hubbub serving WebSocket on {server.url}", flush=True)
    else:
        print("hubbub: public port off (listen_public = false): WebSocket clients only through a mount", flush=True)
    print(f"hubbub serving server API on {server.api_url}/api/ (health: {server.api_url}/health)", flush=True)
    if settings.development_mode:
        print("hubbub: DEVELOPMENT MODE: no token_secret set, anonymous clients may connect", flush=True)
    history = settings.history_path or "memory"
    loop_name = type(loop).__module__.split(".")[0]
    namespaces = ", ".join(sorted(settings.namespaces))
    print(
        f"hubbub: history in {history}; event loop: {loop_name}; build: {build_kind()}; namespaces: {namespaces}",
        flush=True,
    )
    await stop.wait()
    print("hubbub: shutting down", flush=True)
    await server.close()
    print("hubbub: stopped", flush=True)
    return 0


async def _publish(args: argparse.Namespace) -> int:
    import aiohttp

    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"data is not valid JSON: {exc}") from None
    headers = {"Authorization": f"apikey {args.api_key}"} if args.api_key else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            args.url.rstrip("/") + "/api/publish", json={"channel": args.channel, "data": data}, headers=headers
        ) as response:
            body = await response.text()
    print(body, flush=True)
    return 0 if response.status == 200 else 1


async def _subscribe(args: argparse.Namespace) -> int:
    from hubbub.client import Client

    url = args.url
    if not url.rstrip("/").endswith("/connection/websocket"):
        url = url.rstrip("/") + "/connection/websocket"
    since: dict[str, Any] | None = None
    async with Client(url, token=args.token) as client:
        if args.since is not None:
            epoch = args.epoch
            if epoch is None:
                epoch = (await client.history(args.channel, limit=0))["epoch"]
            since = {"offset": args.since, "epoch": epoch}
        subscription = await client.subscribe(args.channel, since=since)
        async for publication in subscription:
            sys.stdout.write(json.dumps(publication.data, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    return 0


def render_top(snapshot: dict[str, Any]) -> str:
    """One screen of `hubbub top`."""
    lines = [
        f"hubbub  connections {snapshot['connections']}  users {snapshot['users']}  "
        f"channels {snapshot['channels']}  subscriptions {snapshot['subscriptions']}",
        f"in {snapshot['messages_in_per_s']:.1f}/s  out {snapshot['messages_out_per_s']:.1f}/s  "
        f"dropped {snapshot['dropped_per_s']:.1f}/s  limit hits {snapshot['limit_hits_per_s']:.1f}/s",
        "",
        f"{'NODE':<12}{'VERSION':<14}{'UPTIME':>10}{'CONNECTIONS':>13}",
    ]
    lines += [f"{n['id']:<12}{n['version']:<14}{n['uptime']:>10.0f}{n['connections']:>13}" for n in snapshot["nodes"]]
    lines += ["", f"{'CHANNEL':<40}{'MSG/S':>10}{'SUBSCRIBERS':>13}"]
    lines += [f"{c['channel'][:39]:<40}{c['rate']:>10.1f}{c['subscribers']:>13}" for c in snapshot["top_channels"]]
    return "\n".join(lines)


async def _top(args: argparse.Namespace) -> int:
    import aiohttp

    url = args.url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/admin/ws"
    shown = 0
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as socket:
        await socket.send_json({"key": args.key})
        async for message in socket:
            payload = json.loads(message.data)
            if "error" in payload:
                raise ConfigError(f"the server refused the key: {payload['error']}")
            snapshots = payload.get("history", [])[-1:] if "history" in payload else [payload["snapshot"]]
            for snapshot in snapshots:
                sys.stdout.write(clear + render_top(snapshot) + "\n\n")
                sys.stdout.flush()
                shown += 1
            if args.count is not None and shown >= args.count:
                break
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from hubbub.demo import run_ticker

    if not 1 <= args.symbols <= 1000:
        raise ConfigError("--symbols must be between 1 and 1000")
    await run_ticker(args.url, symbols=args.symbols, rate=args.rate, duration=args.duration, api_key=args.api_key)
    return 0


def _token(args: argparse.Namespace) -> int:
    from hubbub.core.auth import mint_token

    secret = args.secret
    if secret is None:
        settings = config.load({}, args.config, os.environ)
        secret = settings.token_secret
    if not secret:
        raise ConfigError("no token secret: pass --secret, set HUBBUB_TOKEN_SECRET or token_secret in --config")
    print(mint_token(secret, args.user, ttl=args.ttl), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
