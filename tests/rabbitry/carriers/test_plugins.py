"""Loading connector plugins through entry points: the built-in one, third-party ones, broken ones.

Third-party plugins are real distributions (the `install_plugin` fixture of conftest.py).
"""

from typing import Any

import pytest

from rabbitry.carriers import (
    BrokenPlugin,
    SimulatorConnector,
    UnknownPlugin,
    available_plugins,
    load_connector,
)


def test_the_simulator_is_found_through_its_entry_point() -> None:
    assert "simulator" in available_plugins()
    factory = load_connector("simulator")
    assert factory is SimulatorConnector
    connector = factory("sim", {"dlr_delay": 1})
    assert connector.name == "sim"
    assert connector.health() == "down"


def test_an_unknown_plugin_names_the_available_ones() -> None:
    with pytest.raises(UnknownPlugin, match="carrier plugin 'kannel' is not installed") as caught:
        load_connector("kannel")
    assert "'simulator'" in str(caught.value)
    assert "'smpp'" in str(caught.value)
    assert isinstance(caught.value, LookupError)


def test_a_third_party_plugin_is_loaded(install_plugin: Any) -> None:
    install_plugin(
        "acme_carrier",
        {"acme": "acme_carrier:AcmeConnector"},
        "class AcmeConnector:\n"
        "    def __init__(self, name, options):\n"
        "        self.name = name\n"
        "        self.options = options\n",
    )
    assert {"acme", "simulator"} <= set(available_plugins())
    connector = load_connector("acme")("acme-1", {"region": "eu"})
    assert type(connector).__name__ == "AcmeConnector"
    assert connector.name == "acme-1"


def test_a_plugin_that_fails_to_import_is_named_with_the_cause(install_plugin: Any) -> None:
    install_plugin(
        "flaky_carrier",
        {"flaky": "flaky_carrier:Connector", "missing": "no_such_module_here:Connector"},
        "raise RuntimeError('no licence key found')\n",
    )
    with pytest.raises(BrokenPlugin, match="'flaky'") as caught:
        load_connector("flaky")
    assert "(flaky_carrier:Connector) failed to load: RuntimeError: no licence key found" in str(
        caught.value
    )
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert isinstance(caught.value, ImportError)
    with pytest.raises(BrokenPlugin, match=r"'missing'.*ModuleNotFoundError.*no_such_module_here"):
        load_connector("missing")


def test_a_plugin_that_is_not_a_factory_is_refused(install_plugin: Any) -> None:
    install_plugin("odd_carrier", {"odd": "odd_carrier:NAME"}, "NAME = 'odd'\n")
    with pytest.raises(
        BrokenPlugin, match="'odd' \\(odd_carrier:NAME\\) is a str, not a connector"
    ):
        load_connector("odd")


def test_a_name_declared_twice_for_different_objects_is_refused(install_plugin: Any) -> None:
    install_plugin("one_carrier", {"twin": "one_carrier:Connector"}, None)
    install_plugin("two_carrier", {"twin": "two_carrier:Connector"}, None)
    with pytest.raises(BrokenPlugin, match="'twin' is declared for different objects"):
        load_connector("twin")
