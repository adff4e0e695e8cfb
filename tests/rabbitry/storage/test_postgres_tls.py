"""PostgreSQL over TLS is libpq's: `sslmode` (and `sslrootcert`, `sslcert`...) in the store URL
reach it as written. The local server has no TLS, so `sslmode=require` must be refused by libpq
itself, naming SSL, while the same URL without it connects."""

import pytest

from rabbitry.billing import LedgerUnavailable, open_ledger_store
from rabbitry.platform import open_records

URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_the_store_url_sslmode_reaches_libpq() -> None:
    with open_ledger_store(URL) as store:
        assert store is not None  # the server is there, without TLS
    for opener in (open_ledger_store, open_records):
        with (
            pytest.raises(LedgerUnavailable, match="server does not support SSL"),
            opener(f"{URL}?sslmode=require"),
        ):
            pass  # pragma: no cover - refused before
