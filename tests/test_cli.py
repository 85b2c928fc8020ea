"""The `hubbub` command, run as a real process."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from hubbub import cli, config
from hubbub.errors import DisconnectCode
from tests.helpers import SECRET


class Process:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"process ended before {pattern!r}; output: {self.lines}")
                line = raw.decode()
                self.lines.append(line)
                if match := re.search(pattern, line):
                    return match


def hubbub_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hubbub", *args]


@pytest.fixture
async def spawn() -> AsyncIterator[object]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(*args: str, env: dict[str, str] | None = None) -> Process:
        process = await asyncio.create_subprocess_exec(
            *hubbub_command(*args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        processes.append(process)
        return Process(process)

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()  # only processes this test started, by their handle
            await process.wait()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(
        hubbub_command(*args), capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}
    )
    return done.returncode, done.stdout + done.stderr


async def test_serve_prints_urls_and_drains_on_sigterm(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """serve prints its URLs and development mode; SIGTERM closes clients with 1001 and exits 0."""
    server = await spawn("serve", "--port", "0", "--api-port", "0", "--history-path", str(tmp_path / "h.db"))
    ws_url = (await server.wait_for_line(r"WebSocket on (ws://\S+)")).group(1)
    api_url = (await server.wait_for_line(r"server API on (http://\S+)/api/")).group(1)
    await server.wait_for_line("DEVELOPMENT MODE")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url, protocols=("hubbub.json.v1",))
        await ws.send_str('{"id":1,"connect":{}}')
        assert "connect" in json.loads((await ws.receive(timeout=5)).data)
        async with http.post(f"{api_url}/api/publish", json={"channel": "news", "data": "kept"}) as response:
            assert response.status == 200
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == DisconnectCode.GOING_AWAY
    assert await asyncio.wait_for(server.process.wait(), 15) == 0
    assert time.monotonic() - stopping < 30  # the drain bound the security defaults promise
    # History was flushed to the file: a new server has it.
    again = await spawn("serve", "--port", "0", "--api-port", "0", "--history-path", str(tmp_path / "h.db"))
    api_url = (await again.wait_for_line(r"server API on (http://\S+)/api/")).group(1)
    async with aiohttp.ClientSession() as http, http.get(f"{api_url}/api/history?channel=news") as response:
        assert [p["data"] for p in (await response.json())["publications"]] == ["kept"]
    again.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(again.process.wait(), 15) == 0


async def test_event_loop_setting_picks_the_loop(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The default (auto) runs on uvloop, installed by the dev extra; `--event-loop asyncio` does not."""
    fast = await spawn("serve", "--port", "0", "--api-port", "0", "--history-path", "none")
    await fast.wait_for_line(r"event loop: uvloop; build: pure Python;")
    plain = await spawn("serve", "--port", "0", "--api-port", "0", "--history-path", "none", "--event-loop", "asyncio")
    await plain.wait_for_line(r"event loop: asyncio;")
    for server in (fast, plain):
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), 15) == 0
    assert cli.loop_factory("asyncio") is None and cli.loop_factory("auto") is not None


async def test_publish_and_subscribe_commands(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = await spawn("serve", "--port", "0", "--api-port", "0", "--history-path", "none")
    ws_url = (await server.wait_for_line(r"WebSocket on (ws://\S+)")).group(1)
    api_url = (await server.wait_for_line(r"server API on (http://\S+)/api/")).group(1)
    base_ws = ws_url.removesuffix("/connection/websocket")
    code, output = await asyncio.to_thread(run, "publish", "news", '{"n": 1}', "--url", api_url)
    assert code == 0 and json.loads(output)["offset"] == 1
    subscriber = await spawn("subscribe", "news", "--url", base_ws, "--since", "0")
    assert (await subscriber.wait_for_line(r"^\{.*\}$")).group(0) == '{"n":1}'  # replayed from history
    code, _ = await asyncio.to_thread(run, "publish", "news", '{"n": 2}', "--url", api_url)
    assert code == 0
    assert (await subscriber.wait_for_line(r'^\{"n":2\}$')).group(0) == '{"n":2}'  # live, flushed at once
    code, output = await asyncio.to_thread(run, "publish", "nowhere:x", "1", "--url", api_url)
    assert code == 1 and json.loads(output)["error"]["code"] == 102


async def test_a_client_command_started_with_sigint_ignored_still_stops_on_it(tmp_path: Path) -> None:
    """A shell's background job inherits SIGINT ignored; `hubbub subscribe` stops on it anyway."""
    server = await asyncio.create_subprocess_exec(
        *hubbub_command("serve", "--port", "0", "--api-port", "0", "--history-path", "none"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    subscriber = None
    try:
        output = Process(server)
        ws_url = (await output.wait_for_line(r"WebSocket on (ws://\S+)")).group(1)
        api_url = (await output.wait_for_line(r"server API on (http://\S+)/api/")).group(1)
        code, _ = await asyncio.to_thread(run, "publish", "news", '{"n": 1}', "--url", api_url)
        assert code == 0
        base = ws_url.removesuffix("/connection/websocket")
        subscriber = await asyncio.create_subprocess_exec(
            *hubbub_command("subscribe", "news", "--url", base, "--since", "0"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` does
        )
        await Process(subscriber).wait_for_line(r'^\{"n":1\}$')  # subscribed: the replay is out
        subscriber.send_signal(signal.SIGINT)  # the process this test started, by its handle
        assert await asyncio.wait_for(subscriber.wait(), 10) == 130
    finally:
        for process in (subscriber, server):
            if process is not None and process.returncode is None:
                process.kill()  # the processes this test started, by their handles
                await process.wait()


def test_token_mints_a_jwt_with_the_configured_secret() -> None:
    code, output = run("token", "alice", "--ttl", "60", env={"HUBBUB_TOKEN_SECRET": SECRET})
    assert code == 0
    claims = jwt.decode(output.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60


def test_token_without_a_secret_explains_what_to_do() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    import subprocess

    done = subprocess.run(hubbub_command("token", "alice"), capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2 and "no token secret" in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (["--port", "eighty"], {}, None, "'port'"),
        ([], {"HUBBUB_PROT": "1"}, None, "HUBBUB_PROT"),
        ([], {}, "prot = 1\n", "'prot'"),
        ([], {}, "[namespaces.chat]\nhistroy_size = 1\n", "namespaces.chat.histroy_size"),
    ],
)
def test_serve_rejects_bad_settings_naming_the_key(
    tmp_path: Path, args: list[str], env: dict[str, str], toml: str | None, message: str
) -> None:
    if toml is not None:
        (tmp_path / "hubbub.toml").write_text(toml)
        args = [*args, "--config", str(tmp_path / "hubbub.toml")]
    code, output = run("serve", *args, env=env)
    assert code == 2 and message in output, output


def test_served_process_tunes_the_garbage_collector() -> None:
    """Start-up objects frozen out of the collector's view; young passes 10x rarer than CPython's."""
    before = gc.get_threshold()
    try:
        cli.tune_garbage_collector()
        assert gc.get_threshold() == (cli.GC_YOUNG_THRESHOLD, *before[1:])
        assert cli.GC_YOUNG_THRESHOLD > before[0] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_boolean_settings_are_switches_with_a_no_form() -> None:
    """`--dev`/`--no-dev` and friends: a switch on the command line, true/false in TOML and env."""
    parser = cli.build_parser()
    assert parser.parse_args(["serve", "--dev"]).dev is True
    assert parser.parse_args(["serve", "--no-dev"]).dev is False
    assert parser.parse_args(["serve"]).dev is None  # unset: TOML, environment or default decide
    for field in config.setting_fields():
        if config.is_switch(field):
            flag = field.name.replace("_", "-")
            assert getattr(parser.parse_args(["serve", f"--{flag}"]), field.name) is True, flag
            assert getattr(parser.parse_args(["serve", f"--no-{flag}"]), field.name) is False, flag
    code, output = run("serve", "--dev", "true")
    assert code == 2 and "unrecognized arguments: true" in output
    assert config.load(environ={"HUBBUB_COMPRESSION": "true"}).compression is True


def test_serve_help_names_each_settings_environment_variable() -> None:
    code, output = run("serve", "--help")
    assert code == 0
    text = " ".join(output.split())  # argparse wraps lines
    for field in config.setting_fields():
        assert f"env HUBBUB_{field.name.upper()})" in text, field.name


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    import hubbub

    code, output = run("--version")
    assert code == 0 and output.strip() == f"hubbub {version('hubbub')} (pure Python)"
    assert hubbub.__version__ == version("hubbub")


def test_client_commands_without_a_server_say_so(tmp_path: Path) -> None:
    """No traceback for a newcomer who runs `hubbub publish` before `hubbub serve`."""
    from tests.redis_server import free_port

    code, output = run("publish", "news", "1", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and output.startswith("hubbub: cannot reach the server") and "Traceback" not in output
