"""The `rabbitry` command and the guard that makes sure `supervisor` is ours.

Rabbitry's top-level package `supervisor` shares its import name with the Supervisor process
manager on PyPI (`pip install supervisor`). When both are installed in one environment, whichever
comes first on `sys.path` wins; `main` checks before anything else and fails with one sentence
instead of an obscure `ImportError` deep inside the program.
"""

from rabbitry._guard import SupervisorShadowedError, ensure_rabbitry_supervisor
from rabbitry._main import main

__all__ = ["SupervisorShadowedError", "ensure_rabbitry_supervisor", "main"]
