"""msgspec's validation errors, told in the operator's words.

msgspec reports the first problem as text such as ``Expected `int` >= 1 - at `$.pools[0].size```.
`translate` reads the path out of it, finds the type in the schema and the raw value at that path,
and writes the sentence from those (`pools[0].size must be >= 1 (got 0)`), so the wording depends
on msgspec only for which kind of problem it found. It works for any schema of `Table`s.
"""

import difflib
import functools
import operator
import re
from collections.abc import Mapping, Sequence

import msgspec
from msgspec import inspect

from conf._errors import KeyPath, key_path, show
from conf._secret import Secret, SecretURL, SecretURLs

__all__ = ["sentence", "translate"]

_AT = re.compile(r"^(?P<text>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>[0-9]+|\.\.\.)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_NOTHING = object()


def sentence(path: KeyPath, rule: str, labels: Mapping[KeyPath, str]) -> str:
    """`key rule`, the key followed by the environment variable it came from, if any."""
    label = f" (from {labels[path]})" if path in labels else ""
    return f"{key_path(path)}{label} {rule}"


def translate(
    error: msgspec.ValidationError,
    raw: Mapping[str, object],
    labels: Mapping[KeyPath, str],
    schema: type,
) -> tuple[KeyPath, str]:
    """The key path and the one-sentence message for `error`, raised converting `raw` to
    `schema`; `labels` names the environment variable of each value that came from one."""
    match = _AT.match(str(error))
    assert match is not None  # the pattern matches any text
    text = match["text"]
    path: KeyPath = ()
    for segment in _SEGMENT.finditer((match["path"] or "$")[1:]):
        index = segment["index"]
        if index == "...":
            break  # a key of a free-form table: the table is as close as msgspec tells
        path += (segment["name"],) if index is None else (int(index),)
    kind, value = _walk(_type_info(schema), path, raw)
    unknown = _UNKNOWN.match(text)
    if unknown is not None:
        name = unknown["name"]
        known = [field.encode_name for field in _fields(kind)]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {key_path((*path, close[0]))}?"
            if close
            else ("expected one of: " + ", ".join(known))
        )
        return (*path, name), f"unknown key {key_path((*path, name))} ({hint})"
    missing = _MISSING.match(text)
    if missing is not None:
        where = (*path, missing["name"])
        return where, f"{key_path(where)} is required but missing"
    return path, sentence(path, _rule(kind, value, text), labels)


@functools.cache
def _type_info(schema: type) -> inspect.Type:
    return inspect.type_info(schema)


def _walk(
    root: inspect.Type, path: KeyPath, raw: Mapping[str, object]
) -> tuple[inspect.Type | None, object]:
    kind: inspect.Type | None = root
    value: object = raw
    for part in path:
        kind = _unwrap(kind)
        if isinstance(kind, inspect.UnionType):
            kind = next(
                (member for member in kind.types if not isinstance(member, inspect.NoneType)), None
            )
        if isinstance(kind, inspect.StructType) and isinstance(part, str):
            kind = next((f.type for f in kind.fields if f.encode_name == part), None)
        elif isinstance(kind, inspect.ListType | inspect.VarTupleType):
            kind = kind.item_type
        elif isinstance(kind, inspect.DictType):
            kind = kind.value_type
        else:
            kind = None
        if isinstance(value, Mapping) and isinstance(part, str):
            value = value.get(part, _NOTHING)
        elif isinstance(value, Sequence) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            value = _NOTHING
    return _unwrap(kind), value


def _unwrap(kind: inspect.Type | None) -> inspect.Type | None:
    return kind.type if isinstance(kind, inspect.Metadata) else kind


def _fields(kind: inspect.Type | None) -> list[inspect.Field]:
    if isinstance(kind, inspect.UnionType):
        kind = next((m for m in kind.types if isinstance(m, inspect.StructType)), None)
    return list(kind.fields) if isinstance(kind, inspect.StructType) else []


def _members(kind: inspect.Type | None) -> list[inspect.Type]:
    if isinstance(kind, inspect.UnionType):
        return [_unwrap(m) or m for m in kind.types if not isinstance(m, inspect.NoneType)]
    return [] if kind is None else [kind]


def _rule(kind: inspect.Type | None, value: object, text: str) -> str:
    members = _members(kind)
    secret = any(isinstance(m, inspect.CustomType) and m.cls is Secret for m in members)
    got = f"(got {show(value, secret=secret)})" if value is not _NOTHING else f"({text})"
    for member in members:
        if _fits(member, value):
            bound = _broken_bound(member, value)
            if bound is not None:
                return f"must be {bound} {got}"
    nouns = [_noun(member) for member in members]
    if not nouns or None in nouns:
        return f"is not valid: {text} {got}"
    return f"must be {' or '.join(noun for noun in nouns if noun)} {got}"


def _fits(kind: inspect.Type, value: object) -> bool:
    if isinstance(value, bool):
        return isinstance(kind, inspect.BoolType)
    if isinstance(kind, inspect.IntType):
        return isinstance(value, int)
    if isinstance(kind, inspect.FloatType):
        return isinstance(value, int | float)
    if isinstance(kind, inspect.ListType | inspect.VarTupleType):
        return isinstance(value, list)
    return False


def _broken_bound(kind: inspect.Type, value: object) -> str | None:
    if isinstance(kind, inspect.IntType | inspect.FloatType) and isinstance(value, int | float):
        for name, symbol, holds in (
            ("gt", ">", operator.gt),
            ("ge", ">=", operator.ge),
            ("lt", "<", operator.lt),
            ("le", "<=", operator.le),
        ):
            bound = getattr(kind, name)
            if bound is not None and not holds(value, bound):
                return f"{symbol} {bound:g}"
    if (
        isinstance(kind, inspect.ListType | inspect.VarTupleType)
        and isinstance(value, list)
        and kind.min_length is not None
        and len(value) < kind.min_length
    ):
        return "a non-empty list"
    return None


def _noun(kind: inspect.Type) -> str | None:
    if isinstance(kind, inspect.LiteralType):
        return "one of " + ", ".join(show(value) for value in kind.values)
    if isinstance(kind, inspect.CustomType) and kind.cls is SecretURLs:
        return "a string or a list of strings"
    if isinstance(kind, inspect.CustomType) and kind.cls in (Secret, SecretURL):
        return "a string"
    nouns: list[tuple[type[inspect.Type], str]] = [
        (inspect.BoolType, "true or false"),
        (inspect.IntType, "an integer"),
        (inspect.FloatType, "a number"),
        (inspect.StrType, "a string"),
        (inspect.DecimalType, "a decimal string"),
        (inspect.ListType, "a list"),
        (inspect.VarTupleType, "a list"),
        (inspect.StructType, "a table"),
        (inspect.DictType, "a table"),
    ]
    return next((noun for cls, noun in nouns if isinstance(kind, cls)), None)
