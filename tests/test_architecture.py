"""The house rules: rooms depend one way, packages re-export through thin `__init__` files."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each room may import only the rooms listed after it (conf <- broker <- actors <- supervisor).
ALLOWED = {
    "conf": set(),
    "broker": {"conf"},
    "actors": {"conf", "broker"},
    "supervisor": {"conf", "broker", "actors"},
}
PACKAGES = sorted(ALLOWED)


def imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("room", PACKAGES)
def test_rooms_depend_one_way(room: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_rooms(path) - ALLOWED[room] - {room})
        for path in sorted((ROOT / room).rglob("*.py"))
    }
    assert {path: rooms for path, rooms in offenders.items() if rooms} == {}


def isort_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps `__all__` in: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("package", [*PACKAGES, "rabbitry"])
def test_init_only_reexports_a_sorted_all(package: str) -> None:
    init = ROOT / package / "__init__.py"
    tree = ast.parse(init.read_text())
    for node in tree.body:
        allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        assert is_docstring or isinstance(node, allowed), f"{init}:{node.lineno} defines code"
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=isort_order), f"{package}.__all__ is not sorted"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small_or_say_why(package: str) -> None:
    too_long = []
    for path in (ROOT / package).rglob("*.py"):
        lines = path.read_text().splitlines()
        docstring = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > 600 and "600 lines" not in docstring:
            too_long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert too_long == []
