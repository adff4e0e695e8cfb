"""Fixtures for the application's tests: a site directory to install carrier plugins into."""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rabbitry.carriers import GROUP

InstallPlugin = Callable[[str, dict[str, str], str | None], None]


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallPlugin]:
    """Installs a distribution declaring carrier plugins, as `pip install` would.

    `install_plugin(distribution, {name: "module:object"}, source)` writes the distribution's
    `*.dist-info` (where `importlib.metadata` finds entry points) into a directory on `sys.path`,
    and, when `source` is given, the module `distribution.py` next to it.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def install(distribution: str, entry_points: dict[str, str], source: str | None) -> None:
        info = tmp_path / f"{distribution}-1.0.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        (info / "METADATA").write_text(metadata)
        lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        if source is not None:
            (tmp_path / f"{distribution}.py").write_text(source)
            modules.append(distribution)

    yield install
    for module in modules:
        sys.modules.pop(module, None)
