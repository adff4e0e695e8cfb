"""Detect the Supervisor process manager shadowing Rabbitry's `supervisor` package."""

import importlib
import sys

MARKER = "__rabbitry__"


class SupervisorShadowedError(ImportError):
    """The module imported as `supervisor` is not Rabbitry's."""


def ensure_rabbitry_supervisor() -> None:
    """Import `supervisor` and check that it is Rabbitry's.

    Raises:
        SupervisorShadowedError: another distribution (normally the Supervisor process manager
            from PyPI) provides the `supervisor` module first on `sys.path`.
    """
    module = importlib.import_module("supervisor")
    if getattr(module, MARKER, False):
        return
    where = getattr(module, "__file__", None) or repr(list(getattr(module, "__path__", [])))
    raise SupervisorShadowedError(
        f"the 'supervisor' module imported from {where} is not Rabbitry's: another package "
        "(most likely the Supervisor process manager, PyPI 'supervisor') provides the same "
        f"import name and comes first on sys.path in {sys.prefix}; uninstall it "
        "('pip uninstall supervisor') or install Rabbitry in a virtual environment of its own"
    )
