"""Request templates and answer paths of the HTTP connector: what goes out, what comes back.

    template = RequestTemplate.parse("carriers.acme.options.request",
                                     {"To": "{to}", "From": "{from}", "Body": "{text}"})
    template.render(values)            # {"To": "+33612345678", "From": "Shop", "Body": "Hi"}

    path = parse_path("carriers.acme.options.response.id_path", "messages.*.message-id")
    find(answer, path)                 # ["0A00000012345678", "0A00000012345679"]

A template is a table of the carrier's field names; each string value may hold placeholders
(`PLACEHOLDERS`), written `{to}`, with `{{` and `}}` for literal braces. A value that is exactly
one placeholder keeps its type (`"{segments}"` renders as the integer 2 in a JSON body); any
other string is filled in as text. Numbers, booleans, lists and nested tables pass through (their
strings templated too), and a `conf.Secret` value (the config makes one of a field with a secret
name, like `api_key`) is templated the same and revealed only when the body is built. A key
`NAME_env = "VAR"` puts the environment variable VAR's value under NAME, as a Secret, as it is.

A path is dotted keys into a JSON answer: a number indexes a list, `*` takes every element of a
list. `find` returns every value the path reaches (in order, a list found at the end is
flattened), so one id, a list of ids and one id per part all come out as a list.

Raises `ValueError` naming the key (its `where`) for an unknown placeholder, a malformed template
or path, or an `_env` key naming an unset variable.
"""

import string
from collections.abc import Mapping
from typing import Literal

import attrs

from conf import Secret

PLACEHOLDERS = (
    "callback_url",
    "encoding",
    "from",
    "from_digits",
    "message_id",
    "segments",
    "text",
    "to",
    "to_digits",
)
"""What a template may hold: `{to_digits}`/`{from_digits}` are the numbers without their "+"."""

Scalar = str | int | float | bool
Value = Scalar | Secret | list["Value"] | dict[str, "Value"]
Body = dict[str, object]


@attrs.frozen
class _Field:
    """A string value: its pieces, literal texts and placeholder names, in order."""

    pieces: tuple[tuple[Literal["text", "field"], str], ...]


_Node = Scalar | Secret | _Field | tuple["_Node", ...] | dict[str, "_Node"]


@attrs.frozen
class RequestTemplate:
    """A parsed request template (see the module docstring)."""

    fields: dict[str, _Node]

    @classmethod
    def parse(
        cls, where: str, table: Mapping[str, object], *, environ: Mapping[str, str], flat: bool
    ) -> "RequestTemplate":
        """Checks `table`; `flat` (a form body) allows only scalars and lists of them."""
        return cls(_parse_table(where, table, environ, flat=flat, depth=0))

    def render(self, values: Mapping[str, Scalar]) -> Body:
        """The body for `values` (one per `PLACEHOLDERS` name), secrets revealed."""
        return {key: _render(node, values) for key, node in self.fields.items()}

    def placeholders(self) -> frozenset[str]:
        """The placeholder names the template uses."""
        found: set[str] = set()
        _collect(self.fields, found)
        return frozenset(found)


def _parse_table(
    where: str, table: Mapping[str, object], environ: Mapping[str, str], *, flat: bool, depth: int
) -> dict[str, _Node]:
    fields: dict[str, _Node] = {}
    for key, value in table.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where} has an empty or non-string field name (got {key!r})")
        target = key
        if key.endswith("_env") and len(key) > len("_env"):
            target = key.removesuffix("_env")
        if target in fields:
            raise ValueError(f"{where}.{target} is given twice (as {target} and {target}_env)")
        if target != key:  # the environment's value, as it is: never a template
            fields[target] = _from_environment(f"{where}.{key}", value, environ)
        else:
            fields[target] = _parse_value(f"{where}.{key}", value, environ, flat=flat, depth=depth)
    return fields


def _from_environment(where: str, variable: object, environ: Mapping[str, str]) -> Secret:
    if not isinstance(variable, str) or not variable:
        raise ValueError(f"{where} must name an environment variable (got {variable!r})")
    if variable not in environ:
        raise ValueError(f"{where} names the environment variable {variable!r}, which is not set")
    return Secret(environ[variable])


def _parse_value(
    where: str, value: object, environ: Mapping[str, str], *, flat: bool, depth: int
) -> _Node:
    if isinstance(value, str):
        return _parse_string(where, value)
    if isinstance(value, Secret):
        return _parse_secret(where, value)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple) and not (flat and depth > 0):
        return tuple(
            _parse_value(f"{where}[{index}]", item, environ, flat=flat, depth=depth + 1)
            for index, item in enumerate(value)
        )
    if isinstance(value, Mapping) and not flat:
        return _parse_table(where, value, environ, flat=flat, depth=depth + 1)
    expected = (
        "a string, number, boolean or list of them (a form body is flat)"
        if flat
        else "a string, number, boolean, list or table"
    )
    raise ValueError(f"{where} must be {expected} (got {value!r})")


def _parse_string(where: str, value: str) -> _Node:
    pieces: list[tuple[Literal["text", "field"], str]] = []
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(
            f"{where} is not a valid template ({exc}; write {{{{ and }}}} for literal braces)"
            f" (got {value!r})"
        ) from None
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append(("text", literal))
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            known = ", ".join("{" + known + "}" for known in PLACEHOLDERS)
            raise ValueError(
                f"{where} holds an unknown placeholder (known: {known}, without conversion or"
                f" format; write {{{{ and }}}} for literal braces) (got {value!r})"
            )
        pieces.append(("field", name))
    if all(kind == "text" for kind, _ in pieces):
        return "".join(text for _, text in pieces)
    return _Field(tuple(pieces))


def _parse_secret(where: str, value: Secret) -> _Node:
    """A value the config made a Secret for its name (`api_key`): a template like any other, but
    its text stays a Secret and an error does not show it."""
    try:
        node = _parse_string(where, value.reveal())
    except ValueError:
        raise ValueError(
            f"{where} is not a valid template (a placeholder it does not know, or a lone brace;"
            " write {{ and }} for literal braces) (got ***)"
        ) from None
    return node if isinstance(node, _Field) else Secret(str(node))


def _render(node: _Node, values: Mapping[str, Scalar]) -> object:
    if isinstance(node, _Field):
        if len(node.pieces) == 1:
            return values[node.pieces[0][1]]
        return "".join(text if kind == "text" else str(values[text]) for kind, text in node.pieces)
    if isinstance(node, Secret):
        return node.reveal()
    if isinstance(node, tuple):
        return [_render(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _render(item, values) for key, item in node.items()}
    return node


def _collect(node: _Node, found: set[str]) -> None:
    if isinstance(node, _Field):
        found.update(text for kind, text in node.pieces if kind == "field")
    elif isinstance(node, tuple):
        for item in node:
            _collect(item, found)
    elif isinstance(node, dict):
        for item in node.values():
            _collect(item, found)


Path = tuple[str | int, ...]
"""A parsed path: keys, list indexes, and "*" for every element."""


def parse_path(where: str, value: object) -> Path:
    """Checks a dotted path ("messages.0.message-id", "messages.*.status")."""
    if not isinstance(value, str) or not value or any(not key for key in value.split(".")):
        raise ValueError(
            f"{where} must be a dotted path of keys, list indexes and *, like"
            f" 'messages.0.message-id' (got {value!r})"
        )
    return tuple(int(key) if key.lstrip("-").isdigit() else key for key in value.split("."))


def find(document: object, path: Path) -> list[object]:
    """Every value `path` reaches in `document`, in order; a list reached at the end is spread."""
    found: list[object] = []
    _walk(document, path, found)
    return found


def _walk(node: object, path: Path, found: list[object]) -> None:
    if not path:
        if isinstance(node, list):
            found.extend(node)
        elif node is not None:
            found.append(node)
        return
    key, rest = path[0], path[1:]
    if isinstance(node, list):
        if key == "*":
            for item in node:
                _walk(item, rest, found)
        elif isinstance(key, int) and -len(node) <= key < len(node):
            _walk(node[key], rest, found)
    elif isinstance(node, dict):
        name = str(key)
        if name in node:
            _walk(node[name], rest, found)


def show_path(path: Path) -> str:
    """The path as written."""
    return ".".join(str(key) for key in path)
