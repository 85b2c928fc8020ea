"""Every close code and error code docs/graphql.md lists is one the server sends, and a test in
this folder triggers it and checks for it."""

from __future__ import annotations

import re
from pathlib import Path

from hubbub.transports.graphql_ws import Close

HERE = Path(__file__).resolve().parent
DOC = (HERE.parent.parent / "docs" / "graphql.md").read_text()
TESTS = "\n".join(path.read_text() for path in HERE.glob("test_*.py") if path.name != Path(__file__).name)


def table(heading: str) -> list[str]:
    section = DOC.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [row.strip("|").split("|")[0].strip() for row in rows]


def test_every_documented_close_code_is_sent_and_checked() -> None:
    documented = {int(code) for code in table("Close codes")}
    assert documented == {int(code) for code in Close}
    for code in documented:
        assert re.search(rf"== {code}\b", TESTS), f"no test checks close code {code}"


def test_every_documented_error_code_is_checked() -> None:
    codes = table("Error codes")
    assert len(codes) >= 10
    for code in codes:
        assert f'"{code}"' in TESTS, f"no test checks error code {code}"
