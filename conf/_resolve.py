"""From a pool's `actor = "package.module:ClassName"` to the class, with errors that say where.

The config check only validates the syntax (a check must not import user code); the daemon
resolves the classes before it starts anything:

    classes = resolve_actors(config)        # {"refunds": <class 'app.refunds:Refunds'>, ...}
"""

import importlib
from collections.abc import Sequence
from typing import Protocol

from conf._check import valid_import_path
from conf._errors import ConfigError, show
from conf._schema import Pool

__all__ = ["resolve_actors", "resolve_import_path"]


class _WithPools(Protocol):
    """A config with `[[pools]]`."""

    @property
    def pools(self) -> Sequence[Pool]: ...


def resolve_import_path(text: str, *, key: str) -> object:
    """The object `text` ("package.module:Name.Attribute") names; `key` names the config key.

    Raises:
        ConfigError: the syntax is wrong, the module cannot be imported (the import error is
            chained) or has no such attribute.
    """
    if not valid_import_path(text):
        raise ConfigError(
            f'{key} must be an import path like "package.module:ClassName" (got {show(text)})',
            key=key,
        )
    module_name, _, attribute_path = text.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{key} names the module {show(module_name)}, which cannot be imported "
            f"({type(exc).__name__}: {exc}); check the name and that it is installed",
            key=key,
        ) from exc
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ConfigError(
                f"{key} names {show(text)}, but module {show(module_name)} has no "
                f"{show(attribute_path)}",
                key=key,
            ) from None
    return target


def resolve_actors(config: _WithPools) -> dict[str, type]:
    """Each pool's name and the actor class it names, in pool order (`config.pools`).

    Raises:
        ConfigError: as `resolve_import_path`, or the name is not a class, naming the key.
    """
    classes: dict[str, type] = {}
    for index, pool in enumerate(config.pools):
        key = f"pools[{index}].actor"
        target = resolve_import_path(pool.actor, key=key)
        if not isinstance(target, type):
            raise ConfigError(
                f"{key} must name a class (got {show(pool.actor)}, a {type(target).__name__})",
                key=key,
            )
        classes[pool.name] = target
    return classes
