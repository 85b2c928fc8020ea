"""Every `hubbub ...` and `make ...` command shown in README.md and docs/*.md runs as written.

Commands come from the shell code blocks of the docs, run by bash in a scratch directory with
`.venv/bin` first on PATH and the `export` lines of their block applied. Only what cannot run
here as written is adapted, and the adaptation is named in ADAPTED: fixed ports become free ones
(other tests and servers share this machine) and a remote Redis becomes the test's own.
A server command runs until it answers `/health`, then gets SIGINT and must stop cleanly; a
client command runs against a server started the same way and must do its job.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:sh|bash|shell|console)\n(.*?)```", re.S)
COMMAND = re.compile(r"^(?:\.venv/bin/)?(hubbub|make)\b")
INLINE_COMMAND = re.compile(r"`((?:\.venv/bin/)?(?:hubbub|make) [a-z][^`]*)`")
# `make test` is the command running this test; `make bench` runs the full ten-minute suite
# (its smoke version is tests/test_bench.py): both are checked to exist, not run. `make test`
# builds the compiled wheel after this test, and runs the compiled commands then
# (tests/test_compiled.py): here they would compile for a minute first.
NOT_RUN = {"make test", "make bench", "make compiled", "make serve-compiled", "make test-compiled"}
ADAPTED = {
    "ports 8000/8001": "become free ports (HUBBUB_PORT/HUBBUB_API_PORT or the flags' values)",
    "redis://10.0.0.5:6379/0 and redis://127.0.0.1:6379/0": "become the test's own redis-server",
    "redis-cluster://10.0.0.5:7000,...": "becomes the test's own Redis Cluster (3 masters, 3 replicas)",
    "--host 0.0.0.0": "becomes 127.0.0.1 (tests reach loopback only)",
}


@dataclass
class Documented:
    source: str
    command: str
    exports: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.source}: {self.command}"


def documented_commands() -> list[Documented]:
    found = []
    for path in DOCUMENTS:
        for block in SHELL_BLOCK.findall(path.read_text()):
            exports: dict[str, str] = {}
            for raw in block.splitlines():
                line = re.sub(r"\s+#\s.*$", "", raw).strip()
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").partition("=")
                    exports[name] = value
                elif COMMAND.match(line):
                    found.append(Documented(path.name, line, dict(exports)))
        # Commands quoted in the prose (`hubbub top`), once each, unless a block shows them already.
        shown = {c.command for c in found}
        for command in dict.fromkeys(INLINE_COMMAND.findall(SHELL_BLOCK.sub("", path.read_text()))):
            if command not in shown:
                found.append(Documented(f"{path.name} (inline)", command))
    return found


COMMANDS = documented_commands()


@dataclass
class Scratch:
    """A scratch directory and the environment documented commands run in."""

    directory: Path
    env: dict[str, str]
    port: int
    api_port: int

    def adapt(self, command: str, redis_url: str | None) -> str:
        command = command.removesuffix("&").strip()
        command = re.sub(r"--port 8000\b", f"--port {self.port}", command)
        command = re.sub(r"--api-port 8001\b", f"--api-port {self.api_port}", command)
        command = command.replace("--host 0.0.0.0", "--host 127.0.0.1")
        command = command.replace("http://127.0.0.1:8001", f"http://127.0.0.1:{self.api_port}")
        command = command.replace("ws://127.0.0.1:8000", f"ws://127.0.0.1:{self.port}")
        if redis_url is not None:
            command = re.sub(r"redis-cluster://[0-9.:,]+", redis_url, command)
            command = re.sub(r"redis://[0-9.]+:6379/0", redis_url, command)
        if re.match(r"^(\.venv/bin/)?hubbub (subscribe|publish|demo|top)\b", command) and "--url" not in command:
            which = "ws" if " subscribe " in f" {command} " else "http"
            port = self.port if which == "ws" else self.api_port
            command += f" --url {which}://127.0.0.1:{port}"
        return command

    def spawn(self, command: str, exports: dict[str, str]) -> subprocess.Popen[bytes]:
        script = "".join(f"export {name}={value}\n" for name, value in exports.items()) + f"exec {command}\n"
        return subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.directory if not command.startswith("make") else ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGINT reaches make and its child
        )

    def run(self, command: str, exports: dict[str, str]) -> subprocess.CompletedProcess[str]:
        script = "".join(f"export {name}={value}\n" for name, value in exports.items()) + command + "\n"
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.directory if not command.startswith("make") else ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    port, api_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HUBBUB_PORT=str(port),
        HUBBUB_API_PORT=str(api_port),
        HUBBUB_HISTORY_PATH=str(tmp_path / "history.db"),
    )
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the README's `.venv/bin/hubbub`
    yield Scratch(tmp_path, env, port, api_port)


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The next line the process prints; fail after `timeout` (waits on the pipe, no sleep).

    Reads the pipe's descriptor itself, so no line hides in a buffer that select cannot see.
    """
    assert process.stdout is not None
    pending: bytearray = PENDING.setdefault(process.pid, bytearray())
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in pending:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"no line within {timeout} s; so far: {bytes(pending)!r}")
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"exited with {process.wait()} before the line; output: {bytes(pending)!r}")
            pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line.decode()


PENDING: dict[int, bytearray] = {}


def wait_healthy(api_port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> list[str]:
    """Wait for the server to say it serves its API, then `/health/ready` must answer 200."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while not any("server API on" in line for line in lines):
        lines.append(read_line(process, max(0.1, deadline - time.monotonic())))
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health/ready", timeout=5) as answer:
        assert answer.status == 200, lines
    return lines


def interrupt(process: subprocess.Popen[bytes]) -> str:
    """SIGINT to the command's process group (the processes this test started); its output."""
    os.killpg(process.pid, signal.SIGINT)
    earlier = bytes(PENDING.pop(process.pid, b""))
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"did not stop within 20 s of SIGINT:\n{output.decode()}") from None
    return (earlier + output).decode()


def tls_files(directory: Path) -> None:
    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(directory / "key.pem")
    certificate.cert_chain_pems[0].write_to_path(directory / "cert.pem")


def needs_redis(command: str) -> bool:
    return "redis://" in command or "redis-cluster://" in command


def test_the_docs_show_commands_of_every_kind() -> None:
    """The extraction finds the README's quick start, so an empty list cannot pass unnoticed."""
    commands = {c.command for c in COMMANDS}
    assert {"make serve", "make test", "make chat"} <= {c.split("  ")[0].strip() for c in commands}
    assert any(c.startswith("hubbub subscribe") for c in commands)
    makefile = (ROOT / "Makefile").read_text()
    for command in NOT_RUN:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M), f"{command} has no Makefile target"


def server_command(command: str) -> bool:
    """Starts a server (and runs until SIGINT): not `hubbub serve --help`, which only prints."""
    bare = command.removeprefix(".venv/bin/")
    return bare.startswith(("hubbub serve", "make serve", "make chat")) and "--help" not in command


@pytest.mark.parametrize(
    "documented", [c for c in COMMANDS if server_command(c.command) and c.command not in NOT_RUN], ids=lambda c: c.id
)
def test_documented_server_command_serves_then_stops_on_sigint(
    documented: Documented, scratch: Scratch, request: pytest.FixtureRequest
) -> None:
    """Starts, answers /health, and on SIGINT closes its connections and exits."""
    redis_url = None
    if needs_redis(documented.command):
        fixture = "redis_cluster_url" if "redis-cluster://" in documented.command else "redis_url"
        redis_url = request.getfixturevalue(fixture)
        scratch.env["HUBBUB_REDIS_PREFIX"] = f"docs-{uuid.uuid4().hex}"
    if "cert.pem" in documented.command:
        tls_files(scratch.directory)
    exports = dict(documented.exports)
    if "$SECRET" in documented.command:
        exports["SECRET"] = "a-documented-secret-of-at-least-32-bytes"
    process = scratch.spawn(scratch.adapt(documented.command, redis_url), exports)
    try:
        wait_healthy(scratch.api_port, process)
    finally:
        output = interrupt(process)  # stopped whether it came up or not: no process outlives its test
    assert "hubbub: stopped" in output, output


def evaluated(exports: dict[str, str], scratch: Scratch) -> dict[str, str]:
    """The block's `export` values as bash computes them, once."""
    values = {}
    for name, value in exports.items():
        done = scratch.run(f'export {name}={value}; printf %s "${name}"', {})
        values[name] = shlex.quote(done.stdout)
    return values


def serve_for(scratch: Scratch, documented: Documented) -> subprocess.Popen[bytes]:
    """The server a client command talks to: `hubbub serve` with the block's exports."""
    process = scratch.spawn("hubbub serve", documented.exports)
    wait_healthy(scratch.api_port, process)
    return process


def publish(scratch: Scratch, channel: str, data: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{scratch.api_port}/api/publish",
        data=f'{{"channel": "{channel}", "data": {data}}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


@pytest.mark.parametrize("documented", [c for c in COMMANDS if not server_command(c.command)], ids=lambda c: c.id)
def test_documented_client_command_does_its_job(documented: Documented, scratch: Scratch) -> None:
    """Run against a server started the same way; each kind of command shows that it worked."""
    if documented.command in NOT_RUN:
        pytest.skip(f"{documented.command!r}: checked to exist, not run here (see NOT_RUN)")
    documented.exports = evaluated(documented.exports, scratch)  # one secret for server and client
    server = serve_for(scratch, documented)
    try:
        command = scratch.adapt(documented.command, None)
        words = shlex.split(command.removeprefix(".venv/bin/"))
        if words[1] == "publish":
            done = scratch.run(command, documented.exports)
            assert done.returncode == 0 and '"offset":1' in done.stdout, done.stdout + done.stderr
        elif words[1] == "subscribe":
            if "--since" in words:
                publish(scratch, words[2], '{"text": "before"}')
            process = scratch.spawn(command, documented.exports)
            try:
                if "--since" in words:
                    assert read_line(process, 15).strip() == '{"text":"before"}'
                else:
                    # Published until the subscription is in place: the first line printed is one of them.
                    deadline = time.monotonic() + 15
                    line = ""
                    while not line and time.monotonic() < deadline:
                        publish(scratch, words[2], '{"text": "live"}')
                        try:
                            line = read_line(process, 0.5)
                        except AssertionError:
                            continue
                    assert line.strip() == '{"text":"live"}', line
            finally:
                interrupt(process)
        elif words[1] in ("demo", "top"):  # both run until Ctrl-C
            process = scratch.spawn(command, documented.exports)
            try:
                assert ("updates/s" if words[1] == "demo" else "hubbub  connections") in read_line(process, 15)
            finally:
                interrupt(process)
        else:
            done = scratch.run(command, documented.exports)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        output = interrupt(server)
        assert "hubbub: stopped" in output, output
