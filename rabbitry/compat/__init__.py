"""Old names of the application's modules, kept working (and logged) for one release."""

from rabbitry.compat._renamed import (
    RENAMED,
    deprecation,
    install_renamed_modules,
    log_deprecated,
    renamed_module,
    renamed_path,
)

__all__ = [
    "RENAMED",
    "deprecation",
    "install_renamed_modules",
    "log_deprecated",
    "renamed_module",
    "renamed_path",
]
