"""The decision modules stay pure: no trio, no aiormq, so Hypothesis drives them fast.

The supervisor's core and the restart window it shares with entity hosts (`actors._window`,
imported as `actors.RestartWindow`): a name taken from a package counts as the module that
defines it, so `from actors import RestartWindow` is pure and `from actors import Mailbox` is not.
"""

import ast
import importlib
import types
from pathlib import Path

import pytest

PURE = {
    "actors": ["_window"],
    "supervisor": ["_backoff", "_decision", "_errors", "_snapshot", "_spec"],
}
PURE_MODULES = {f"{package}.{module}" for package, modules in PURE.items() for module in modules}


def sources_of(module: str) -> set[str]:
    """The modules `module` imports names from; a package's re-export counts as its origin."""
    package, _, name = module.partition(".")
    path = Path(importlib.import_module(package).__file__ or "").parent / f"{name}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module not in PURE:
                found.add(node.module)
                continue
            exporter = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(exporter, alias.name)
                is_module = isinstance(value, types.ModuleType)
                found.add(value.__name__ if is_module else value.__module__)
    return found


@pytest.mark.parametrize("module", sorted(PURE_MODULES))
def test_pure_modules_import_neither_trio_nor_aiormq(module: str) -> None:
    imported = sources_of(module)
    packages = {name.split(".")[0] for name in imported}
    assert packages & {"trio", "aiormq", "anyio", "broker"} == set()
    impure = {name for name in imported if name.split(".")[0] in PURE} - PURE_MODULES
    assert impure == set()
