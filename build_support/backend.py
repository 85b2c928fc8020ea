"""setuptools' PEP 517 backend, plus mypy when COMPILE_HUBBUB=1 asks for the compiled build.

Editable installs are never compiled: an extension beside the source would shadow every later edit.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

COMPILER = "mypy>=2.4"  # mypyc ships with mypy; the version the compiled build is tested with


def _compiling() -> bool:
    return os.environ.get("COMPILE_HUBBUB", "0") not in ("", "0")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = [COMPILER] if _compiling() else []
    return [*build_meta.get_requires_for_build_wheel(config_settings), *extra]


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    os.environ["COMPILE_HUBBUB"] = "0"
    return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
