"""scripts/system-packages.sh: what `make test` and `.ci/run` call to get the Debian packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-packages.sh"


def test_make_test_and_ci_call_the_same_script() -> None:
    assert "bash scripts/system-packages.sh" in (ROOT / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]
    assert "bash scripts/system-packages.sh" in (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # one list, in the script


def test_nothing_to_do_when_every_package_is_there() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become nobody")
def test_without_root_it_prints_the_one_command_and_stops(tmp_path: Path) -> None:
    """A PATH without make and redis-server, as user nobody: the apt-get line to run, exit 1."""
    tmp_path.chmod(0o755)  # nobody must reach the tools below
    for parent in tmp_path.parents:
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    (tmp_path / "bash").symlink_to(shutil.which("bash") or "bash")
    (tmp_path / "python3").symlink_to(shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable)
    done = subprocess.run(
        [
            shutil.which("setpriv") or "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(tmp_path / "bash"),
            str(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    command = done.stderr.split("\n    ")[1].split("\n")[0]
    assert command.startswith("sudo apt-get update && sudo apt-get install -y make ") and "redis-server" in command
    assert "installing" not in done.stdout  # it did not try
