"""Autobahn TestSuite server cases (kosoku) against the public WebSocket transport.

The echo endpoint exists only with the test-only setting `test_echo_endpoint`. Compression is
on, so the permessage-deflate cases (12.x, 13.x) run too. The one known failure is a
`websockets` behaviour documented in docs/security.md; the test pins that exact set, so a new
failure, or a fix upstream, shows up here.
"""

from __future__ import annotations

import os

import pytest
from kosoku import FailureError, run_fuzzingclient

from tests.conftest import StartServer

KNOWN_FAILURES = {
    "7.1.5",  # data frame after a close frame: websockets' parser closes 1002, Autobahn wants 1000
}

# The large-message compression cases take about 5 minutes; they passed in the full run quoted in
# docs/security.md. HUBBUB_AUTOBAHN_FULL=1 runs them.
SLOW_CASES = [f"{group}.{section}.{index}" for group in (12, 13) for section in range(1, 8) for index in range(10, 19)]


@pytest.mark.timeout(900)
# Autobahn's own case files (run inside kosoku) leave test-data files open: their warnings, not ours.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_autobahn_server_cases(start_server: StartServer) -> None:
    server = await start_server(
        test_echo_endpoint=True,
        compression=True,
        max_message_bytes=64 * 1024 * 1024,
        ping_interval=None,
        connect_rate_per_ip=None,
        max_connections_per_ip=None,
        history_path=None,
    )
    full = os.environ.get("HUBBUB_AUTOBAHN_FULL") == "1"
    exclude = [case for case in SLOW_CASES if not case.startswith("12.6.")] if not full else None
    try:
        results = await run_fuzzingclient(f"ws://127.0.0.1:{server.port}/echo", exclude_cases=exclude, concurrency=4)
    except FailureError as failure:
        results = failure.results
    failed = {result.case_id for result in results if not result.passed}
    assert failed == KNOWN_FAILURES, (
        f"unexpected: {sorted(failed - KNOWN_FAILURES)}, fixed: {sorted(KNOWN_FAILURES - failed)}"
    )
    assert len(results) >= (517 if full else 517 - len(SLOW_CASES))
