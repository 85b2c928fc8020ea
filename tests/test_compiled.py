"""The compiled build (docs/compiled.md): `make test-compiled` runs this file, and the tests of the
compiled modules, against the mypyc wheel with EXPECT_COMPILED_HUBBUB=1; `make test` runs it
against the source tree, where an extension left beside edited source would be caught."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import hubbub
from hubbub.compiled import C_HELPERS, MODULES, build_kind, compiled_modules
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent

EXPECT_COMPILED = os.environ.get("EXPECT_COMPILED_HUBBUB") == "1"
EXPECTED_KIND = "compiled" if EXPECT_COMPILED else "pure Python"
ASYNC_NODES = (ast.Await, ast.AsyncWith, ast.AsyncFor)


def test_every_listed_module_is_loaded_as_this_build_expects() -> None:
    assert compiled_modules() == dict.fromkeys((*MODULES, *C_HELPERS), EXPECT_COMPILED)
    assert build_kind() == EXPECTED_KIND


def test_the_direct_writes_use_the_c_helper_only_in_the_compiled_build() -> None:
    import os

    from hubbub.transports import sink

    assert (sink.write_descriptor is os.write) is not EXPECT_COMPILED


def test_the_compiled_modules_keep_their_source_beside_them() -> None:
    """Tracebacks and the pure-Python fallback read the same files the extensions were built from."""
    package = Path(hubbub.__file__).parent
    for name in MODULES:
        assert (package.parent / (name.replace(".", "/") + ".py")).is_file(), name


def test_no_compiled_finally_block_awaits() -> None:
    """mypyc (2.4.1 included, mypyc/mypyc#1114) leaves an exception that passes through a `finally`
    block that awaits as the thread's current exception, and the next such block re-raises it in
    whatever task runs it (tests/core/test_session.py shows the hub failing that way). Compiled
    modules clean up with `except BaseException: ...; raise` and the same step after the `try`."""
    package = Path(hubbub.__file__).parent
    offenders = []
    for name in MODULES:
        path = package.parent / (name.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Try, ast.TryStar)):
                waits = [n for stmt in node.finalbody for n in ast.walk(stmt) if isinstance(n, ASYNC_NODES)]
                offenders += [f"{path.name}:{wait.lineno}" for wait in waits]
    assert offenders == []


def test_the_command_line_names_the_build() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubbub", "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == f"hubbub {hubbub.__version__} ({EXPECTED_KIND})"


def test_a_compiled_session_still_answers_every_method() -> None:
    """The method table moved out of the class for mypyc; every handler it names is a coroutine."""
    import inspect

    from hubbub import protocol
    from hubbub.core import session

    assert set(session._HANDLERS) == set(protocol.REQUEST_TYPES)
    assert all(inspect.iscoroutinefunction(handler) for handler in session._HANDLERS.values())


def test_the_backend_asks_for_mypyc_only_when_compiling() -> None:
    """`COMPILE_HUBBUB=1 pip install .` builds in isolation, where mypy is not there until the
    backend has asked for it: listing the requirements must not need it."""
    script = (
        "import json, sys; sys.modules['mypyc'] = None; sys.path.insert(0, 'build_support'); import backend; "
        "print(json.dumps([backend.COMPILER, backend.get_requires_for_build_wheel(),"
        " backend.get_requires_for_build_editable()]))"
    )
    for compiling in ("1", "0"):
        env = {**os.environ, "COMPILE_HUBBUB": compiling}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        compiler, requires, editable = json.loads(done.stdout.splitlines()[-1])
        assert compiler not in editable  # `pip install -e .` is never compiled, whatever the variable
        assert (compiler in requires) is (compiling == "1"), requires
        assert any(need.startswith("msgspec") for need in requires) is (compiling == "1"), requires  # its types


@pytest.mark.skipif(not EXPECT_COMPILED, reason="make test-compiled runs it, once the wheel is built")
async def test_make_serve_compiled_serves_on_the_compiled_build() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUBBUB_")}
    env |= {"HUBBUB_PORT": str(free_port()), "HUBBUB_API_PORT": str(free_port()), "HUBBUB_HISTORY_PATH": "none"}
    make = await asyncio.create_subprocess_exec(
        "make", "--no-print-directory", "serve-compiled", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert make.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any("build: compiled;" in line for line in lines):
                raw = await make.stdout.readline()
                assert raw, f"make serve-compiled ended early: {lines}"
                lines.append(raw.decode())
    finally:
        os.killpg(make.pid, signal.SIGINT)  # our own make and the server it started
        async with asyncio.timeout(20):
            rest, _ = await make.communicate()
    assert "hubbub: stopped" in rest.decode(), lines  # make itself reports the SIGINT it got


def test_the_source_distribution_carries_the_build_backend(tmp_path: Path) -> None:
    """pyproject.toml names an in-tree backend: an sdist without it could not be installed."""
    import shutil
    import tarfile

    checkout = tmp_path / "checkout"  # no egg-info left from earlier builds, which would add files
    skipped = (".git", ".venv", "build", "dist", "*.egg-info", "node_modules", "*.db*", "__pycache__", ".*_cache")
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*skipped, "bench-results"))
    script = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    done = subprocess.run([sys.executable, "-c", script], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with tarfile.open(tmp_path / done.stdout.splitlines()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"build_support/backend.py", "setup.py", "src/hubbub/compiled.py"} <= names
