"""The benchmark commands run end to end (smoke tests at toy scale: only the ticker's bound is asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import require_redis_server

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
            "--slack-ms",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The bound holds: at this scale p99 is ~3 ms, so 20% of it is noise; 10 ms more is not (a
    # slow reader that stalled the fan-out would cost the fast readers far more).
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fast readers alone" in done.stdout and "with slow readers" in done.stdout
    assert "slow readers: 4," in done.stdout


def test_cluster_scenario_runs_and_reports() -> None:
    require_redis_server()  # its "2 workers + Redis" half starts one
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
            "--singles-rate",
            "200",
            "--publishers",
            "10",
            "--duration",
            "1",
            "--redis-cluster",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 process" in done.stdout and "2 workers + Redis" in done.stdout
    assert "2 workers + Redis / 1 process, singles:" in done.stdout
    assert "2 workers + Cluster / 1 process, singles:" in done.stdout


def smoke_suite(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench suite --smoke FLAGS`: it must finish, and no server may fail a scenario."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "suite", "--smoke", *flags, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed" not in done.stdout, done.stdout
    return done


def test_suite_compares_hubbub_with_the_python_peers(tmp_path: Path) -> None:
    """Every scenario runs against every server; peers are printed as ratios; charts are written."""
    done = smoke_suite(tmp_path)
    for heading in ("fan-out 1->50, closed loop", "20 channels x 3", "chat 40 users / 4 rooms", "200 idle connections"):
        assert heading in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["server"] for r in results} == {"hubbub", "websockets", "aiohttp", "socketio"}
    hubbub = [r for r in results if r["server"] == "hubbub"]
    assert all(r["lost"] == 0 for r in hubbub), hubbub
    assert all(r["delivered_per_s"] > 0 for r in hubbub if r["phase"] != "idle")
    assert all(r["kib_per_conn"] > 0 and r["handshakes_per_s"] > 0 for r in hubbub)
    assert "uvloop (load generator)" in done.stdout  # asyncio's loop saturated it first at 100k/s
    ratio_rows = [row for row in done.stdout.splitlines() if row.startswith("| websockets |")]
    assert ratio_rows and all("x |" in row for row in ratio_rows)
    for chart in ("deliveries.png", "latency.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")


def test_suite_measures_sse_beside_websocket(tmp_path: Path) -> None:
    """`hubbub-sse`: the same server, its subscribers on Server-Sent Events (docs/benchmarks.md)."""
    done = smoke_suite(tmp_path, "--servers", "hubbub,hubbub-sse", "--scenarios", "fanout,idle")
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    sse = [r for r in results if r["server"] == "hubbub-sse"]
    assert {r["phase"] for r in sse} == {"closed loop", "open loop 2k/s", "idle"}
    assert all(r["lost"] == 0 and r["kib_per_conn"] > 0 and r["handshakes_per_s"] > 0 for r in sse), sse
    assert all(r["delivered_per_s"] > 0 for r in sse if r["phase"] != "idle")
    assert any(row.startswith("| hubbub-sse |") for row in done.stdout.splitlines())


@pytest.mark.parametrize(
    "variants",
    [("hubbub-graphql", "hubbub-graphql-100"), ("hubbub-centrifugo-json", "hubbub-centrifugo-protobuf")],
    ids=["graphql", "centrifugo"],
)
def test_suite_measures_protocols_beside_the_native_one(tmp_path: Path, variants: tuple[str, str]) -> None:
    """The same server, its clients on GraphQL (`hubbub-graphql`: one document, `-100`: 100 of
    them) or on Centrifugo's client protocol (JSON, Protobuf); every publication reaches every
    subscriber (docs/benchmarks.md)."""
    done = smoke_suite(tmp_path, "--servers", ",".join(("hubbub", *variants)), "--scenarios", "fanout,idle")
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    for name in variants:
        rows = [r for r in results if r["server"] == name]
        assert {r["phase"] for r in rows} == {"closed loop", "open loop 2k/s", "idle"}, rows
        assert all(r["lost"] == 0 and r["kib_per_conn"] > 0 and r["handshakes_per_s"] > 0 for r in rows), rows
        assert all(r["delivered_per_s"] > 0 for r in rows if r["phase"] != "idle")
        assert any(row.startswith(f"| {name} |") for row in done.stdout.splitlines())
    assert "server CPU us/delivery" in done.stdout


def test_suite_runs_the_rooms_scenario_with_reconnects(tmp_path: Path) -> None:
    """Rooms of 10 with typing while users reconnect: hubbub's reconnecting clients recover
    what they missed, so none of its subscribers lacks a message (docs/benchmarks.md)."""
    done = smoke_suite(tmp_path, "--servers", "hubbub,aiohttp", "--scenarios", "rooms")
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["server"] for r in results} == {"hubbub", "aiohttp"}
    hubbub = next(r for r in results if r["server"] == "hubbub")
    assert hubbub["scenario"].startswith("rooms 200 users / 20 rooms of 10") and "reconnect" in hubbub["phase"]
    assert hubbub["lost"] == 0 and hubbub["delivered_per_s"] > 0, hubbub
    assert any(row.startswith("| aiohttp |") for row in done.stdout.splitlines())


def test_suite_runs_another_checkout_beside_todays(tmp_path: Path) -> None:
    """`hubbub@PATH` runs hubbub from another `src` folder in the same run (a before/after)."""
    from bench.servers import server_spec

    before = tmp_path / "before"
    shutil.copytree(ROOT / "src", before)
    spec = server_spec(f"hubbub@{before}")
    assert spec.command(1, tmp_path, uvloop=False)[:2] == ["env", f"PYTHONPATH={before}"]
    with pytest.raises(SystemExit, match="no hubbub package"):
        server_spec(f"hubbub@{tmp_path / 'nowhere'}")
    done = smoke_suite(tmp_path / "out", "--servers", f"hubbub,hubbub@{before}", "--scenarios", "channels")
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert {r["server"] for r in results} == {"hubbub", f"hubbub@{before}"}
    assert all(r["lost"] == 0 and r["delivered_per_s"] > 0 for r in results), results
    assert any(row.startswith(f"| hubbub@{before} |") for row in done.stdout.splitlines())
