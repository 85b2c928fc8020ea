"""The committed Protobuf module is what `make proto` makes from centrifugo.proto, and it runs
on Google's C core (upb), not the pure-Python fallback."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from google.protobuf.internal import api_implementation

import hubbub.wire.centrifugo_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "src" / "hubbub" / "wire" / "centrifugo_pb2.py"


def test_the_generated_module_is_fresh(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^proto:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe is not None, "the Makefile has a proto target"
    command = (
        recipe.group(1).replace("$(BIN)/python", sys.executable).replace("--python_out=src", f"--python_out={tmp_path}")
    )
    subprocess.run(command.split(), cwd=ROOT, check=True)
    fresh = (tmp_path / "hubbub" / "wire" / "centrifugo_pb2.py").read_text()
    assert fresh == MODULE.read_text(), "centrifugo_pb2.py is stale: run `make proto` and commit it"


def test_protobuf_runs_on_upb() -> None:
    assert api_implementation.Type() == "upb"
    assert pb.Reply.DESCRIPTOR.fields_by_name["push"].number == 4  # type: ignore[attr-defined]  # no stubs


def test_without_the_protobuf_runtime_the_handshake_names_the_extra(tmp_path: Path) -> None:
    """A server without hubbub[protobuf] (protobuf hidden from its process) still serves JSON,
    and answers a `centrifuge-protobuf` upgrade with 400 saying what to install."""
    script = """
import sys
sys.modules["google"] = None  # as if protobuf were not installed
from hubbub.cli import main
sys.exit(main(["serve", "--port", "0", "--api-port", "0", "--history-path", "none"]))
"""
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    try:
        assert server.stdout is not None
        port = None
        for line in server.stdout:  # bounded: the server prints its URLs at start, or exits
            found = re.search(r"WebSocket on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server did not start"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(
                b"GET /connection/centrifugo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: centrifuge-protobuf\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer or b"protobuf]" not in answer:
                chunk = client.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400") and b"needs hubbub[protobuf]" in answer, answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:  # JSON: no subprotocol
            client.sendall(
                b"GET /connection/centrifugo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            assert client.recv(4096).startswith(b"HTTP/1.1 101")
    finally:
        server.send_signal(signal.SIGINT)  # the process this test started, by its handle
        server.communicate(timeout=20)  # reads the rest and closes the pipe
