"""Finding carrier connector plugins: entry points of the group `rabbitry.carriers`.

    factory = load_connector("simulator")          # rabbitry.carriers:SimulatorConnector
    connector = factory("sim", {"dlr_delay": 1.0})
    available_plugins()                            # ('simulator', ...): every installed one

A distribution offers a connector by declaring an entry point whose name is what a
`[[carriers]]` table's `plugin` key gives, and whose object is a `ConnectorFactory` (usually the
connector class itself):

    [project.entry-points."rabbitry.carriers"]
    simulator = "rabbitry.carriers:SimulatorConnector"

The built-in simulator is found the same way, through Rabbitry's own installed metadata (so a
new entry point shows only once the package is installed again, even when editable).

Raises `UnknownPlugin` (also a `LookupError`) for a name no installed distribution declares, and
`BrokenPlugin` (also an `ImportError`) when the plugin's module fails to import or its object is
not callable, or two distributions declare the name for different objects.
"""

from importlib.metadata import EntryPoint, entry_points
from typing import cast

from rabbitry.carriers._connector import ConnectorFactory
from rabbitry.compat import install_renamed_modules, log_deprecated, renamed_path

GROUP = "rabbitry.carriers"
"""The entry point group carrier connector plugins are declared in."""


class PluginError(Exception):
    """Base of the errors of loading a carrier plugin."""


class UnknownPlugin(PluginError, LookupError):  # noqa: N818 - the names of the public contract
    """No installed distribution declares a carrier plugin of that name."""


class BrokenPlugin(PluginError, ImportError):  # noqa: N818 - the names of the public contract
    """A carrier plugin is declared but cannot be loaded."""


def available_plugins() -> tuple[str, ...]:
    """The names of the installed carrier plugins, sorted."""
    return tuple(sorted({point.name for point in entry_points(group=GROUP)}))


def load_connector(plugin: str) -> ConnectorFactory:
    """The connector factory the installed plugin `plugin` declares; imports its module."""
    points = _points(plugin)
    if not points:
        available = ", ".join(repr(name) for name in available_plugins()) or "none"
        raise UnknownPlugin(
            f"carrier plugin {plugin!r} is not installed (entry point group {GROUP!r}; available:"
            f" {available}); check the carrier's plugin key or install the plugin's package"
        )
    install_renamed_modules()  # the plugin's own code may import Rabbitry's old module names
    targets = sorted({renamed_path(point.value) or point.value for point in points})
    if len(targets) > 1:
        raise BrokenPlugin(
            f"carrier plugin {plugin!r} is declared for different objects ({', '.join(targets)});"
            " uninstall one of the packages declaring it",
            name=plugin,
        )
    point = points[0]
    new = renamed_path(point.value)
    if new is not None:
        log_deprecated(
            point.value,
            new,
            where=f"the entry point of carrier plugin {plugin!r}",
            fix="install a release of the plugin that names the new one",
        )
        point = EntryPoint(point.name, new, point.group)
    try:
        factory = point.load()
    except Exception as exc:  # any error importing it is the plugin's: reported with it
        raise BrokenPlugin(
            f"carrier plugin {plugin!r} ({point.value}) failed to load:"
            f" {type(exc).__name__}: {exc}",
            name=plugin,
        ) from exc
    if not callable(factory):
        raise BrokenPlugin(
            f"carrier plugin {plugin!r} ({point.value}) is a {type(factory).__name__}, not a"
            " connector factory (a callable taking name and options)",
            name=plugin,
        )
    return cast(ConnectorFactory, factory)


def _points(plugin: str) -> list[EntryPoint]:
    return list(entry_points(group=GROUP, name=plugin))
