"""The decision modules stay pure: no trio, no aiormq, so Hypothesis drives them fast."""

import ast
from pathlib import Path

import pytest

import supervisor

PURE = ["_backoff", "_decision", "_errors", "_snapshot", "_spec", "_window"]
PACKAGE = Path(supervisor.__file__).parent


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_neither_trio_nor_aiormq(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            if node.module.startswith("supervisor."):
                imported.add(node.module)
            if node.module == "supervisor":
                imported.update(f"supervisor.{alias.name}" for alias in node.names)
    assert imported & {"trio", "aiormq", "anyio", "actors", "broker"} == set()
    impure = {name for name in imported if name.startswith("supervisor.")} - {
        f"supervisor.{pure}" for pure in PURE
    }
    assert impure == set()
