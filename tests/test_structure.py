"""The public API is explicit, and imports flow one way (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

SOURCE = Path(hubbub.__file__).parent


PUBLIC_MODULES = (
    "hubbub.client",
    "hubbub.config",
    "hubbub.errors",
    "hubbub.hooks",
    "hubbub.mounts",
    "hubbub.publisher",
    "hubbub.server",
)


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


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Modules of ours that `path` imports anywhere (TYPE_CHECKING and function bodies included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "hubbub":
            names.update(f"hubbub.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hubbub"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("hubbub"))
    return {name for name in names if name in MODULES}


# Who may import whom: a module matches the longest key that is its name or a prefix of it.
ALLOWED = {
    "hubbub.errors": set(),
    "hubbub.protocol": {"hubbub.errors"},
    "hubbub.config": {"hubbub.errors"},
    "hubbub.redaction": set(),
    "hubbub.logs": {"hubbub.config", "hubbub.redaction"},
    "hubbub.wire": {"hubbub.protocol", "hubbub.errors", "hubbub.wire"},
    "hubbub.core": {"hubbub.protocol", "hubbub.errors", "hubbub.config", "hubbub.backends.base", "hubbub.core"},
    # Backends see only the contracts and the helpers they share, never each other or the core.
    "hubbub.backends": {"hubbub.backends.base", "hubbub.backends.streams", "hubbub.errors", "hubbub.protocol"},
    # The Redis backends' cluster pub/sub connections are theirs alone.
    "hubbub.backends.redis": {
        "hubbub.backends.base",
        "hubbub.backends.streams",
        "hubbub.backends.redis_shards",
        "hubbub.errors",
        "hubbub.protocol",
    },
    "hubbub.transports": {
        "hubbub.protocol",
        "hubbub.errors",
        "hubbub.config",
        "hubbub.core",
        "hubbub.transports",
        "hubbub.wire",
        "hubbub.graphql",
    },
    # GraphQL's schema-side pieces: graphql-core and the errors, nothing of the server.
    "hubbub.graphql": {"hubbub.errors", "hubbub.graphql"},
    "hubbub.client": {"hubbub.protocol", "hubbub.errors", "hubbub.client"},
    "hubbub.demo": {"hubbub.errors", "hubbub.protocol"},
    "hubbub.cli": {
        "hubbub",
        "hubbub.config",
        "hubbub.errors",
        "hubbub.logs",
        "hubbub.server",
        "hubbub.client",
        "hubbub.core.auth",
        "hubbub.demo",
    },
    "hubbub.server": {"hubbub"},  # the one module that wires everything
    "hubbub.__main__": {"hubbub.cli"},
    "hubbub": {"hubbub"},  # the package re-exports the public modules
}


def rule_for(module: str) -> set[str]:
    keys = [key for key in ALLOWED if module == key or module.startswith(key + ".")]
    assert keys, f"{module} has no import rule in ALLOWED: add one"
    return ALLOWED[max(keys, key=len)]


def test_every_module_follows_its_import_rule() -> None:
    """protocol/errors/config import nothing above them; core no transport or backend; backends
    no other backend; the client nothing of the server."""
    for module, path in MODULES.items():
        allowed = rule_for(module)
        for imported in imports_of(path):
            assert any(imported == a or imported.startswith(a + ".") for a in allowed), f"{module} imports {imported}"


def test_no_module_imports_itself_through_others() -> None:
    """No circle of imports anywhere in src/hubbub (packages' __init__ re-exports aside)."""
    graph = {
        module: {m for m in imports_of(path) if not MODULES[m].name == "__init__.py"}
        for module, path in MODULES.items()
        if path.name != "__init__.py"
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import circle: " + " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_rules_cannot_pass_on_nothing() -> None:
    """The scan finds the modules and imports it is meant to judge."""
    assert {"hubbub.core.hub", "hubbub.core.session", "hubbub.server", "hubbub.cli"} <= set(MODULES)
    assert "hubbub.core.hub" in imports_of(MODULES["hubbub.core.session"])
