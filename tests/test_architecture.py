"""The house rules: the runtime never imports the application, rooms depend one way, no module
reaches into another package's private modules, and packages re-export through thin `__init__`s.

The rooms, each allowed to import only those on the floors below it (ARCHITECTURE.md):

    runtime       conf <- broker <- actors <- supervisor
    application   rabbitry.compat (the old module names, for one release) <- rabbitry.storage
                  <- rabbitry.config <- rabbitry.billing <- rabbitry.carriers <- rabbitry.gateway
                  <- rabbitry.platform <- rabbitry.daemon <- rabbitry.cli <- rabbitry (the entry
                  point)
"""

import ast
import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("conf", "broker", "actors", "supervisor")
APPLICATION = (
    "rabbitry.compat",
    "rabbitry.storage",
    "rabbitry.config",
    "rabbitry.billing",
    "rabbitry.carriers",
    "rabbitry.gateway",
    "rabbitry.platform",
    "rabbitry.daemon",
    "rabbitry.cli",
)
ALLOWED: dict[str, set[str]] = {
    "conf": set(),
    "broker": {"conf"},
    "actors": {"conf", "broker"},
    "supervisor": {"conf", "broker", "actors"},
    "rabbitry.compat": set(),
    "rabbitry.storage": {*RUNTIME, *APPLICATION[:1]},
    "rabbitry.config": {*RUNTIME, *APPLICATION[:2]},
    "rabbitry.billing": {*RUNTIME, *APPLICATION[:3]},
    "rabbitry.carriers": {*RUNTIME, *APPLICATION[:4]},
    "rabbitry.gateway": {*RUNTIME, *APPLICATION[:5]},
    "rabbitry.platform": {*RUNTIME, *APPLICATION[:6]},
    "rabbitry.daemon": {*RUNTIME, *APPLICATION[:7]},
    "rabbitry.cli": {*RUNTIME, *APPLICATION[:8]},
    "rabbitry": {*RUNTIME, *APPLICATION},
}
ROOMS = sorted(ALLOWED, key=len, reverse=True)  # the most specific room first
CODE = ("conf", "broker", "actors", "supervisor", "rabbitry", "bench", "examples")


def room_of(module: str) -> str | None:
    """The room a dotted module name lives in (`rabbitry.carriers.smpp._pdu` -> carriers)."""
    return next((room for room in ROOMS if module == room or module.startswith(room + ".")), None)


def module_of(path: Path, root: Path = ROOT) -> str:
    """The dotted name `path` is imported by: from the first folder up that is not a package
    (the repository, or an example distribution's folder)."""
    parts = path.relative_to(root).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    top = path.parent
    while top != root and (top / "__init__.py").exists():
        top = top.parent
    return ".".join(parts[len(top.relative_to(root).parts) :])


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every absolute import in `path`, `from a import b` giving `a.b`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def sources(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def room_violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Imports of a room from a room it may not import (a runtime room: of the application)."""
    found = []
    for path in paths:
        mine = room_of(module_of(path, root))
        if mine is None:
            continue
        for line, name in imports(path):
            theirs = room_of(name)
            if theirs is not None and theirs != mine and theirs not in ALLOWED[mine]:
                found.append(f"{path.relative_to(root)}:{line}: {mine} imports {name}")
    return found


def private_violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Imports of a private (`_name`) module that belongs to another package than the importer's.

    `a.b._c` belongs to package `a.b`; only modules directly inside `a/b/` may import it.
    """
    found = []
    for path in paths:
        package = module_of(path.parent / "__init__.py", root)
        for line, name in imports(path):
            parts = name.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if private is None or parts[private].startswith("__"):
                continue
            owner = ".".join(parts[:private])
            if owner != package and importlib.util.find_spec(owner) is not None:
                found.append(f"{path.relative_to(root)}:{line}: {package} imports {name}")
    return found


@pytest.mark.parametrize("room", ALLOWED)
def test_rooms_depend_one_way(room: str) -> None:
    folder = room.replace(".", "/")
    paths = [p for p in sources(folder) if room_of(module_of(p)) == room]
    assert paths, f"room {room} has no modules"
    assert room_violations(paths) == []


def test_no_module_imports_another_packages_private_module() -> None:
    assert private_violations(sources(*CODE)) == []


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """Each rule fails on one planted violation (so the tests above can fail)."""
    bad = tmp_path / "actors" / "_planted.py"
    bad.parent.mkdir()
    (bad.parent / "__init__.py").touch()
    bad.write_text(
        "from rabbitry.billing import Money\nfrom broker._rpc import encode_reply\n"
        "from broker import _rpc\nfrom actors._mailbox import Mailbox\n"
    )
    assert room_violations([bad], tmp_path) == [
        "actors/_planted.py:1: actors imports rabbitry.billing.Money"
    ]
    assert private_violations([bad], tmp_path) == [
        "actors/_planted.py:2: actors imports broker._rpc.encode_reply",
        "actors/_planted.py:3: actors imports broker._rpc",
    ]


def test_the_runtime_loads_no_module_of_the_application() -> None:
    program = (
        "import sys, actors, broker, conf, supervisor\n"
        "print(sorted(m for m in sys.modules if m == 'rabbitry' or m.startswith('rabbitry.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def isort_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps `__all__` in: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


PACKAGES = sorted(
    module_of(init)
    for folder in ("conf", "broker", "actors", "supervisor", "rabbitry")
    for init in (ROOT / folder).rglob("__init__.py")
)


@pytest.mark.parametrize("package", PACKAGES)
def test_init_only_reexports_a_sorted_all(package: str) -> None:
    init = ROOT / package.replace(".", "/") / "__init__.py"
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


@pytest.mark.parametrize("room", ALLOWED)
def test_modules_stay_small_or_say_why(room: str) -> None:
    too_long = []
    for path in sources(room.replace(".", "/")):
        if room_of(module_of(path)) != room:
            continue
        lines = path.read_text().splitlines()
        docstring = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > 600 and "600 lines" not in docstring:
            too_long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert too_long == []
