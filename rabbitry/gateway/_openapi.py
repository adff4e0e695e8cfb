"""The OpenAPI 3.1 document of the HTTP API, built from the route table and the answer Structs.

    document(ROUTES, operations=True)     # a dict: what GET /openapi.json answers

    _r("POST", "/v1/sms", "customer", _send,
       Doc("Send an SMS to one or more numbers", SendAnswer, 202, body=SendBody, refusals=(402,)))

Each route of the table carries its `Doc`: a summary, the type of its answer and its status, the
Struct its body decodes into, its query parameters and the refusals only it gives. The rest is
implied by the route: who may call it (its security and 401), its path parameters (404), a body
(400 not JSON, 413 too large, 422 a field), an idempotent POST (the `Idempotency-Key` header, 409
while the same key runs, 422 a key reused) and 500 for a bug. The schemas are msgspec's
(`msgspec.json.schema_components`) of the very types the handlers decode and encode, so the
document cannot say one thing while the code does another; tests/rabbitry/gateway/test_openapi.py
checks that every route is in it, and the fuzz test (tests/rabbitry/daemon/test_fuzz.py) sends
what it describes to a running daemon.

Patterns are written for Python's `re` in the Structs, with `\\Z` for "the end" (`$` also
matches before a final newline there); the document says `$`, which is "the end" in the ECMA
dialect JSON Schema uses.
"""

from collections.abc import Iterable
from typing import Any, Literal, Protocol

import attrs
import msgspec

from rabbitry.gateway._http import JSON, ErrorBody
from rabbitry.gateway._replay import REDACTED_FIELD, SECRET_FIELDS

Access = Literal["public", "carrier", "admin", "customer"]
"""Who may call a route: anyone; a carrier (its connector checks the webhook's signature); the
admin key; an account's API key."""

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{name}"
_IDEMPOTENT_ACCESS = ("customer", "admin")
_REFUSALS = {
    400: "The body is not JSON (`invalid_json`).",
    401: "No valid key for this route (`unauthorized`), or a carrier webhook's signature is"
    " wrong (`bad_signature`).",
    402: "The account cannot pay for it (`insufficient_funds`).",
    404: "No such route, or nothing of that id on this account (`not_found`).",
    409: "A request with this `Idempotency-Key` is still running (`idempotency_key_in_flight`),"
    " or a send was given up (`send_abandoned`).",
    413: "The body is larger than the gateway takes (`body_too_large`).",
    422: "A field, parameter or header is wrong; `error.field` names it (`invalid_field` and"
    " others: `error.code`).",
    500: "A bug (`internal`): nothing is said about it but this.",
    503: "A dependency did not answer (`unavailable`): retry, with the same `Idempotency-Key`.",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first answer (not a 5xx) is kept a day and given again to a"
        " retry of the same request (`Idempotent-Replayed: true`); secrets are not shown again."
        " 1 to 255 printable ASCII characters, optionally in double quotes."
    ),
    "schema": {"type": "string", "pattern": '^(?!""$)[!-~]([ -~]{0,253}[!-~])?$'},
}
_SEGMENT = {"type": "string", "pattern": "^[^/\\x00-\\x1f\\x7f]+$"}  # see _routes._pattern
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    "customer": [{"apiKey": []}],
    "admin": [{"adminKey": []}],
    "public": [],
    "carrier": [],
}


@attrs.frozen
class Query:
    """A query parameter: its name, its JSON Schema, what it means; `repeated` ones are lists."""

    name: str
    schema: dict[str, Any]
    description: str
    repeated: bool = False


@attrs.frozen
class Doc:
    """What the document says of one route beyond what the route itself implies.

    `answer` is the type of its answer (a Struct, `dict[str, Any]`..., or a tuple of the types it
    may be), encoded as `content_type` with `status`; `body` the Struct its body decodes into
    (None: no body); `refusals` the statuses only this route gives (402 of a send, 503 of a
    route that asks the platform).
    """

    summary: str
    answer: Any
    status: int = 200
    content_type: str = JSON
    body: Any = None
    query: tuple[Query, ...] = ()
    refusals: tuple[int, ...] = ()


class Documented(Protocol):
    """A route as the document sees it (rabbitry.gateway._routes' `Route`)."""

    @property
    def method(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def access(self) -> Access: ...
    @property
    def operations(self) -> bool: ...
    @property
    def doc(self) -> Doc: ...


def document(routes: Iterable[Documented], *, operations: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (without the operations routes unless `operations`)."""
    served = [route for route in routes if operations or not route.operations]
    types = [ErrorBody]
    for route in served:
        if route.doc.content_type == JSON:
            types += _alternatives(route.doc.answer)
        if route.doc.body is not None:
            types.append(route.doc.body)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(map(_type_key, types), schemas, strict=True))
    for kind, schema in list(schema_of.items()):
        name = schema.get("$ref", "").removeprefix(_REF.format(name=""))
        replayed = _replayed(components.get(name, {}))
        if replayed is not None:
            components[name + "Replayed"] = replayed
            schema_of[kind] = {"anyOf": [schema, {"$ref": _REF.format(name=name + "Replayed")}]}
    paths: dict[str, dict[str, Any]] = {}
    for route in served:
        operation = _operation(route, schema_of)
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Rabbitry",
            "version": _version(),
            "description": (
                "The SMS platform's HTTP API. Money is a decimal string, never a float. Errors"
                ' are `{"error": {"code", "message", "field"?}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _ecma(components),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An account's API key (`rk_...`), from `POST /v1/accounts`.",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The admin key of the daemon's config (`[http] admin_key`).",
                },
            },
        },
    }


def _operation(route: Documented, schema_of: dict[object, Any]) -> dict[str, Any]:
    doc = route.doc
    names = _path_names(route.template)
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, route.template),
        "summary": doc.summary,
        "security": _SECURITY[route.access],
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": _SEGMENT} for name in names
    ]
    for query in doc.query:
        schema = {"type": "array", "items": query.schema} if query.repeated else query.schema
        parameters.append(
            {"name": query.name, "in": "query", "description": query.description, "schema": schema}
        )
    idempotent = route.method == "POST" and route.access in _IDEMPOTENT_ACCESS
    if idempotent:
        parameters.append(_IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        body_schema = _ecma(schema_of[_type_key(doc.body)])
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body_schema}}}
    refusals = set(doc.refusals) | {500}
    if route.access in _IDEMPOTENT_ACCESS:
        refusals.add(401)
    if names:
        refusals.add(404)
    if doc.body is not None:
        refusals |= {400, 413, 422}
    if idempotent:
        refusals |= {409, 422}
    if doc.query:
        refusals.add(422)
    error = {JSON: {"schema": schema_of[_type_key(ErrorBody)]}}
    answer = {
        "description": doc.summary,
        "content": {doc.content_type: {"schema": _answer_schema(doc, schema_of)}},
    }
    responses = {str(doc.status): answer}
    for status in sorted(refusals):
        responses[str(status)] = {"description": _REFUSALS[status], "content": error}
    operation["responses"] = responses
    return operation


def _answer_schema(doc: Doc, schema_of: dict[object, Any]) -> dict[str, Any]:
    if doc.content_type == JSON:
        schemas = [schema_of[_type_key(kind)] for kind in _alternatives(doc.answer)]
        return {"anyOf": schemas} if len(schemas) > 1 else dict(schemas[0])
    if doc.content_type.startswith("application/"):  # a PDF
        return {"type": "string", "contentMediaType": doc.content_type}
    return {"type": "string"}


def _replayed(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of an answer with secrets as a retry gets it (rabbitry.gateway._replay): each
    secret null, and `redacted` listing them; None if the answer holds no secret."""
    properties = schema.get("properties", {})
    secrets = sorted(SECRET_FIELDS & set(properties))
    if not secrets:
        return None
    return {
        **schema,
        "title": schema["title"] + "Replayed",
        "description": (
            f"{schema['title']} as a retry with the same Idempotency-Key gets it: the secrets"
            " were shown once, to the first request, and are null here."
        ),
        "properties": {
            **properties,
            **{name: {"type": "null"} for name in secrets},
            REDACTED_FIELD: {"type": "array", "items": {"enum": secrets}},
        },
        "required": [*schema.get("required", []), REDACTED_FIELD],
    }


def _alternatives(answer: Any) -> list[Any]:
    """The types an answer may be: a tuple of them, or one (msgspec describes no union of
    untagged Structs, as `InvoiceStatus | InvoiceDocument`)."""
    return list(answer) if isinstance(answer, tuple) else [answer]


def _type_key(kind: object) -> object:
    """A dict key for a type: `dict[str, Any]` and unions hash, but not always to themselves."""
    return repr(kind)


def _path_names(template: str) -> list[str]:
    return [part.split("}")[0] for part in template.split("{")[1:]]


def _operation_id(method: str, template: str) -> str:
    words = [method.lower()]
    for part in template.strip("/").replace(".", "/").split("/"):
        if part.startswith("{"):
            words.append("by_" + part.strip("{}"))
        elif part != "v1":
            words.append(part.replace("-", "_"))
    return "_".join(words)


def _ecma(schema: Any) -> Any:
    """`schema` with Python's `\\Z` (the very end) written as ECMA's `$` in every pattern."""
    if isinstance(schema, dict):
        return {
            key: value.replace("\\Z", "$") if key == "pattern" else _ecma(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_ecma(item) for item in schema]
    return schema


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rabbitry")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "0"
