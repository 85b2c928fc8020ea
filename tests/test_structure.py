"""The public API is explicit, and imports flow one way (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

SOURCE = Path(hubbub.__file__).parent


PUBLIC_MODULES = ("hubbub.client", "hubbub.config", "hubbub.errors", "hubbub.server")


def test_package_reexports_exactly_what_its_public_modules_export() -> None:
    """`hubbub.__all__` is the union of the public modules' `__all__` (as websockets' exports test)."""
    import importlib

    modules = [importlib.import_module(name) for name in PUBLIC_MODULES]
    combined = [name for module in modules for name in module.__all__]
    assert len(combined) == len(set(combined)), "a name exported by two modules"
    assert set(hubbub.__all__) == {*combined, "__version__"}
    for module in modules:
        for name in module.__all__:
            assert getattr(hubbub, name) is getattr(module, name), f"hubbub.{name} is not {module.__name__}.{name}"


def test_every_public_name_is_defined_and_documented() -> None:
    """Each exported class and function exists and says why it exists (a docstring)."""
    for name in hubbub.__all__:
        value = getattr(hubbub, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"hubbub.{name} has no docstring"


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "hubbub":
            names.update(f"hubbub.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hubbub"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("hubbub"))
    return names


ALLOWED = {
    "protocol.py": {"hubbub.errors"},
    "errors.py": set(),
    "config.py": {"hubbub.errors"},
    "core": {"hubbub.protocol", "hubbub.errors", "hubbub.config", "hubbub.backends.base", "hubbub.core"},
    "backends": {"hubbub.backends", "hubbub.errors", "hubbub.protocol"},
    "transports": {"hubbub.protocol", "hubbub.errors", "hubbub.config", "hubbub.core", "hubbub.transports"},
    "client": {"hubbub.protocol", "hubbub.errors", "hubbub.client"},
}


def test_imports_flow_one_way() -> None:
    """protocol/errors/config import nothing of ours above them; core never imports transports."""
    for key, allowed in ALLOWED.items():
        paths = [SOURCE / key] if key.endswith(".py") else sorted((SOURCE / key).glob("*.py"))
        for path in paths:
            for module in imports_of(path):
                assert any(module == a or module.startswith(a + ".") for a in allowed), f"{path.name} imports {module}"
