"""Reading a connector's options: each value checked, each error naming its key path.

    check = Checker("carriers.acme.options", options, os.environ)
    check.known(("url", "timeout"), "an http")       # an unknown key is an error
    check.seconds("timeout", 10.0)                   # 10.0, or ValueError naming the key
    check.secret("token", required=True)             # token, or token_env's variable, a Secret
    check.sub("auth", None).text("user", None)       # carriers.acme.options.auth.user

Values given as `conf.Secret` (the config makes one of every secret-like key and every `_env`
value) are revealed for checks of plain values; `secret` keeps them Secrets and never shows one.
"""

from collections.abc import Mapping
from typing import TypeVar

from conf import Secret
from rabbitry.carriers.http._template import Path, parse_path

_Choice = TypeVar("_Choice", bound=str)


class Checker:
    """Reads the options under `where` (a key path), raising `ValueError` naming a wrong one."""

    def __init__(self, where: str, options: Mapping[str, object], environ: Mapping[str, str]):
        self.prefix = where
        self.options = options
        self.environ = environ

    def where(self, key: str) -> str:
        return f"{self.prefix}.{key}"

    def known(self, keys: tuple[str, ...], what: str) -> None:
        for key in self.options:
            if key not in keys:
                raise ValueError(
                    f"{self.where(key)} is not {what} option (known: {', '.join(sorted(keys))})"
                )

    def table(self, key: str, value: object) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise ValueError(f"{self.where(key)} must be a table (got {value!r})")
        return value

    def sub(self, key: str, keys: tuple[str, ...] | None) -> "Checker":
        """The checker of the table under `key` (empty when absent), whose keys are `keys`."""
        nested = Checker(self.where(key), self.table(key, self.options.get(key, {})), self.environ)
        if keys is not None:
            nested.known(keys, f"a {key}")
        return nested

    def text(self, key: str, default: str | None) -> str:
        value = self.options.get(key, default)
        if isinstance(value, Secret):
            value = value.reveal()
        if value is None:
            raise ValueError(f"{self.where(key)} is required (a string)")
        if not isinstance(value, str):
            raise ValueError(f"{self.where(key)} must be a string (got {value!r})")
        return value

    def field(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if not value and default:
            raise ValueError(f"{self.where(key)} must be a non-empty field name (got {value!r})")
        return value

    def url(self, key: str) -> str:
        value = self.text(key, None)
        if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
            shown = value if not isinstance(self.options.get(key), Secret) else "***"
            raise ValueError(
                f"{self.where(key)} must be an http:// or https:// URL (got {shown!r})"
            )
        return value

    def choice(self, key: str, default: _Choice, choices: tuple[_Choice, ...]) -> _Choice:
        value = self.options.get(key, default)
        for choice in choices:
            if value == choice:
                return choice
        raise ValueError(
            f"{self.where(key)} must be one of {', '.join(map(repr, choices))} (got {value!r})"
        )

    def seconds(self, key: str, default: float) -> float:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
            raise ValueError(f"{self.where(key)} must be a number of seconds > 0 (got {value!r})")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise ValueError(f"{self.where(key)} must be an integer >= 1 (got {value!r})")
        return value

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self.where(key)} must be true or false (got {value!r})")
        return value

    def secret(self, key: str, *, required: bool) -> Secret | None:
        """`key` (a str or Secret) or `key_env` (an environment variable's name), as a Secret."""
        value = self.options.get(key)
        variable = self.options.get(f"{key}_env")
        if value is not None and variable is not None:
            raise ValueError(
                f"{self.where(key)} and {self.where(key + '_env')} are both set; keep one"
            )
        if variable is not None:
            if not isinstance(variable, str) or not variable:
                raise ValueError(
                    f"{self.where(key + '_env')} must name an environment variable"
                    f" (got {variable!r})"
                )
            if variable not in self.environ:
                raise ValueError(
                    f"{self.where(key + '_env')} names the environment variable {variable!r},"
                    " which is not set"
                )
            value = Secret(self.environ[variable])
        if isinstance(value, str):
            value = Secret(value)
        if value is None and not required:
            return None
        if not isinstance(value, Secret) or not value.reveal():
            raise ValueError(
                f"{self.where(key)} is required: a non-empty string, or {key}_env naming the"
                f" environment variable that holds it (got a {type(value).__name__})"
            )
        return value

    def statuses(self, key: str) -> frozenset[str]:
        value = self.options.get(key, [])
        if not isinstance(value, list | tuple) or not all(
            isinstance(item, str | int) and not isinstance(item, bool) for item in value
        ):
            raise ValueError(
                f"{self.where(key)} must be a list of status values (strings or integers)"
                f" (got {value!r})"
            )
        return frozenset(str(item) for item in value)

    def path(self, key: str) -> Path | None:
        value = self.options.get(key)
        return None if value is None else parse_path(self.where(key), value)
