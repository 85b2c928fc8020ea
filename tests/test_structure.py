"""The public API is explicit, and imports flow one way (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

SOURCE = Path(hubbub.__file__).parent


def test_public_api_is_exactly_all() -> None:
    assert sorted(hubbub.__all__) == sorted(
        [
            "Client",
            "ClientError",
            "ClientPublication",
            "CommandError",
            "ConfigError",
            "ConnectionLost",
            "DisconnectCode",
            "ErrorCode",
            "HubbubError",
            "NamespaceOptions",
            "ProtocolError",
            "ReplyError",
            "Server",
            "Settings",
            "Subscription",
            "__version__",
            "load_settings",
        ]
    )
    for name in hubbub.__all__:
        assert hasattr(hubbub, name), name


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
