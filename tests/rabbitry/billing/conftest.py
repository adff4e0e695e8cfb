"""The real PostgreSQL the ledger's tests use (127.0.0.1:5432, database `test`): an admin
connection, and a fresh schema per test, dropped after. PostgreSQL must be running: the tests that
need it fail, not skip, without it."""

import secrets
from collections.abc import Iterator

import psycopg
import pytest

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(URL, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"ledger_test_{secrets.token_hex(6)}"
    yield name
    admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
