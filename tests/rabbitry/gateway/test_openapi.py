"""`GET /openapi.json`: the OpenAPI 3.1 document, written from the route table, served to anyone.

What the document says of each route is checked against the route table here; that the daemon
answers what it says is the fuzz test's business (tests/rabbitry/daemon/test_fuzz.py).
"""

import json
import re
from typing import Any

import jsonschema_rs
import msgspec
import pytest
import schemathesis

from rabbitry.gateway._openapi import document
from rabbitry.gateway._routes import ROUTES

from .conftest import FakeBackend, FakeOps, Gateway, start_gateway, stop_gateway

SCHEMES = {"customer": [{"apiKey": []}], "admin": [{"adminKey": []}], "public": [], "carrier": []}


async def test_the_document_is_served_to_anyone(gateway: Gateway) -> None:
    response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert served == document(ROUTES, operations=False)
    assert served["openapi"] == "3.1.0"
    assert "/v1/sms" in served["paths"]
    assert "/v1/admin/tree" not in served["paths"]  # this app has no operations backend


async def test_an_app_with_operations_documents_them(nursery: Any) -> None:
    served = await start_gateway(nursery, FakeBackend(), ops=FakeOps())
    try:
        paths = (await served.client.get("/openapi.json")).json()["paths"]
    finally:
        await stop_gateway(served)
    assert set(paths["/v1/admin/parked"]) == {"get"}
    assert paths == document(ROUTES, operations=True)["paths"]


@pytest.mark.parametrize("operations", [False, True])
def test_every_route_is_documented_as_the_table_says(operations: bool) -> None:
    doc = document(ROUTES, operations=operations)
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routes = [route for route in ROUTES if operations or not route.operations]
    assert documented == {(route.method, route.template) for route in routes}
    for route in routes:
        operation = doc["paths"][route.template][route.method.lower()]
        assert operation["security"] == SCHEMES[route.access], route.template
        path_names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert path_names == re.findall(r"\{(\w+)\}", route.template)
        assert route.path.fullmatch(route.template.replace("{", "").replace("}", ""))
        assert str(route.doc.status) in operation["responses"]
        if route.doc.body is None:
            assert "requestBody" not in operation
        elif isinstance(route.doc.body, type) and issubclass(route.doc.body, msgspec.Struct):
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{route.doc.body.__name__}"}
        if route.access in ("customer", "admin"):
            assert "401" in operation["responses"]
        idempotent = route.method == "POST" and route.access in ("customer", "admin")
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert headers == (["Idempotency-Key"] if idempotent else [])


def test_the_document_is_valid_openapi_3_1_and_its_schemas_compile() -> None:
    doc = document(ROUTES, operations=True)
    schemathesis.openapi.from_dict(doc).validate()
    for name, schema in doc["components"]["schemas"].items():
        bundled = {**schema, "$defs": doc["components"]["schemas"]}
        text = json.dumps(bundled).replace("#/components/schemas/", "#/$defs/")
        assert jsonschema_rs.validator_for(json.loads(text)), name


def test_a_replayed_answer_with_secrets_is_documented_too() -> None:
    schemas = document(ROUTES, operations=False)["components"]["schemas"]
    replayed = schemas["AccountCreatedReplayed"]
    assert replayed["properties"]["api_key"] == {"type": "null"}
    assert replayed["properties"]["webhook_secret"] == {"type": "null"}
    assert "redacted" in replayed["required"]


def test_body_patterns_end_with_backslash_z_so_the_document_says_the_same() -> None:
    """A Python pattern's `$` also matches before a final newline; the document's (ECMA) does
    not. The bodies say `\\Z`, which the document writes `$`: the same rule on both sides."""
    bodies = [route.doc.body for route in ROUTES if route.doc.body is not None]
    _, components = msgspec.json.schema_components(bodies)
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', json.dumps(components))
    assert patterns
    for pattern in patterns:
        python = json.loads(f'"{pattern}"')
        assert python.endswith("\\Z"), python
        assert "$" not in python, python
