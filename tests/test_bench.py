"""The benchmark command runs end to end (a smoke test at toy scale: numbers are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ticker_scenario_runs_and_reports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "ticker",
            "--readers",
            "40",
            "--symbols",
            "20",
            "--per-reader",
            "3",
            "--rate",
            "200",
            "--duration",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1 = the 20% bound failed: noise at this scale
    assert "fast readers alone" in done.stdout and "with slow readers" in done.stdout
    assert "slow readers: 4," in done.stdout


def test_cluster_scenario_runs_and_reports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "cluster",
            "--readers",
            "20",
            "--light-rate",
            "10",
            "--heavy-rate",
            "100",
            "--duration",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 process" in done.stdout and "2 workers + Redis" in done.stdout
