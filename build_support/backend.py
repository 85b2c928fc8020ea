"""setuptools' PEP 517 backend, plus mypy when COMPILE_HUBBUB=1 asks for the compiled build.

Editable installs are never compiled: an extension beside the source would shadow every later edit.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

COMPILER = "mypy>=2.4"  # mypyc ships with mypy; the version the compiled build is tested with
# mypyc type-checks everything the compiled modules import, so the build needs the libraries
# whose types they use: the dependencies, and the extras hubbub's modules import.
TYPED_EXTRAS = ("redis", "uvloop", "graphql", "protobuf")


def compile_requirements() -> list[str]:
    with open("pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    extras = project["optional-dependencies"]
    return [COMPILER, *project["dependencies"], *(need for name in TYPED_EXTRAS for need in extras[name])]


def _compiling() -> bool:
    return os.environ.get("COMPILE_HUBBUB", "0") not in ("", "0")


@contextlib.contextmanager
def _not_compiling() -> Iterator[None]:
    """setuptools runs setup.py to list its needs and its metadata too: no mypyc for those
    (before its requirements are installed it is not even there), nor for editable installs."""
    saved = os.environ.get("COMPILE_HUBBUB")
    os.environ["COMPILE_HUBBUB"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COMPILE_HUBBUB"]
        else:
            os.environ["COMPILE_HUBBUB"] = saved


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    compiling = _compiling()
    with _not_compiling():
        requires = build_meta.get_requires_for_build_wheel(config_settings)
    return [*requires, *compile_requirements()] if compiling else requires


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    with _not_compiling():
        return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _not_compiling():
        return build_meta.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    with _not_compiling():
        return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    with _not_compiling():
        return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
