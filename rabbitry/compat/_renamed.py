"""The application's modules that moved out of the runtime's rooms, still found by their old
names for one release (0.2), each use logged once as deprecated.

    renamed_path("actors.platform:ReportsActor")      # -> "rabbitry.platform:ReportsActor"
    renamed_path("rabbitry.platform:ReportsActor")    # -> None: not an old name
    install_renamed_modules()   # `import actors.carriers` (in a plugin) gives rabbitry.carriers

Three kinds of user kept working: a config naming a pool's actor class by its old path
(`actor = "actors.platform:ReportsActor"`), a carrier plugin whose entry point targets an old
module (`acme = "actors.carriers:SimulatorConnector"`), and the code of an out-of-tree plugin or
actor that imports an old module (`from actors.carriers import Connector`). The first two are
resolved by the daemon through `renamed_path`, which lets it name the config key or the plugin in
the deprecation line; the third goes through a `sys.meta_path` finder that hands out the moved
module itself, so old and new names are the very same module object (one class, one registry).
"""

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from collections.abc import Sequence

__all__ = [
    "RENAMED",
    "deprecation",
    "install_renamed_modules",
    "log_deprecated",
    "renamed_module",
    "renamed_path",
]

RENAMED: dict[str, str] = {
    "actors.sms": "rabbitry.billing",
    "actors.carriers": "rabbitry.carriers",
    "actors.gateway": "rabbitry.gateway",
    "actors.platform": "rabbitry.platform",
}
"""Old package -> the package it became; every module below an old package moved with it."""

_log = logging.getLogger("rabbitry.deprecated")
_logged: set[str] = set()


def renamed_module(name: str) -> str | None:
    """The new name of module `name` if it is an old one (`actors.carriers.smpp` ->
    `rabbitry.carriers.smpp`), else None."""
    for old, new in RENAMED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


def renamed_path(path: str) -> str | None:
    """`path` ("module:Attribute", an import path or entry point target) with its module's new
    name if the module is an old one, else None."""
    module, colon, attribute = path.partition(":")
    new = renamed_module(module.strip())
    return None if new is None else f"{new}{colon}{attribute}"


def deprecation(old: str, new: str, *, where: str, fix: str = "write the new one") -> str:
    """The one sentence saying that `where` names `old`, which is now `new`."""
    return (
        f"{where} names {old!r}, which moved to {new!r}; the old name works until the next"
        f" release: {fix}"
    )


def log_deprecated(old: str, new: str, *, where: str, fix: str = "write the new one") -> None:
    """Logs `deprecation(...)` at WARNING, once per `old` name in this process."""
    if old in _logged:
        return
    _logged.add(old)
    message = deprecation(old, new, where=where, fix=fix)
    _log.warning("%s", message, extra={"event": "deprecated", "old": old, "new": new})


def install_renamed_modules() -> None:
    """From now on, importing an old module name gives the moved module (idempotent)."""
    if not any(isinstance(finder, _RenamedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RenamedFinder())


class _RenamedFinder(importlib.abc.MetaPathFinder):
    """Finds old module names first, before the path finder could load a second copy of a moved
    module under its old name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = renamed_module(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _RenamedLoader(new))


class _RenamedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system returns what sys.modules holds under the name once this returns, so
        # the old name is bound to the moved module itself, not to a copy of it.
        moved = importlib.import_module(self.new)
        sys.modules[module.__name__] = moved
        log_deprecated(module.__name__, self.new, where="an import")
