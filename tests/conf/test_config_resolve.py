"""Resolving a pool's actor import path, with errors that name the config key."""

import pytest
from thumbnailer import LOADER

from conf import ConfigError, Secret, Table, resolve_actors, resolve_import_path


def test_an_import_path_resolves_to_its_object() -> None:
    assert resolve_import_path("conf:Table", key="pools[0].actor") is Table
    assert resolve_import_path("conf._secret:Secret.reveal", key="k") is Secret.reveal


def test_resolve_actors_maps_pool_names_to_classes() -> None:
    config = LOADER.loads(
        '[[pools]]\nname = "a"\nactor = "conf:Table"\n[[pools]]\nname = "b"\nactor = "conf:Secret"',
        environ={},
    )
    assert resolve_actors(config) == {"a": Table, "b": Secret}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "no_such_package_here.mod:Actor",
            (
                'pools[0].actor names the module "no_such_package_here.mod", '
                "which cannot be imported "
                "(ModuleNotFoundError: No module named 'no_such_package_here'); "
                "check the name and that it is installed"
            ),
        ),
        (
            "conf:NoSuchActor",
            'pools[0].actor names "conf:NoSuchActor", but module "conf" has no "NoSuchActor"',
        ),
        (
            "conf.Table",
            (
                'pools[0].actor must be an import path like "package.module:ClassName" '
                '(got "conf.Table")'
            ),
        ),
    ],
)
def test_an_unresolvable_import_path_names_the_key(path: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_import_path(path, key="pools[0].actor")
    assert str(error.value) == message
    assert error.value.key == "pools[0].actor"


def test_an_actor_that_is_not_a_class_is_refused() -> None:
    config = LOADER.loads('[[pools]]\nname = "a"\nactor = "conf:config_json"', environ={})
    with pytest.raises(ConfigError) as error:
        resolve_actors(config)
    assert (
        str(error.value) == 'pools[0].actor must name a class (got "conf:config_json", a function)'
    )
