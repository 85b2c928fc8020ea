"""The committed Protobuf module is what `make proto` makes from centrifugo.proto, and it runs
on Google's C core (upb), not the pure-Python fallback."""

from __future__ import annotations

import re
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
