"""The HTTP API over TLS: `[http] certfile` and `keyfile` make the daemon serve HTTPS, with
certificates a test authority (trustme) issues on the spot."""

from __future__ import annotations

import functools
import io
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
import trustme

from conf import ConfigError
from rabbitry.config import Config, load_config, loads_config
from rabbitry.daemon import check_config, run_daemon

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"
ADMIN_KEY = "daemon-test-admin-key-0123456789"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem(authority: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    """(certfile, keyfile) of a server certificate for 127.0.0.1 and localhost."""
    issued = authority.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    issued.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def https_config(tmp_path: Path, certfile: str, keyfile: str) -> Config:
    config = load_config(DEMO, environ={"RABBITRY_ADMIN_KEY": ADMIN_KEY})
    store = type(config.store.url)(f"sqlite:///{tmp_path / 'ledger.db'}")
    return msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(config.store, url=store),
        http=msgspec.structs.replace(config.http, certfile=certfile, keyfile=keyfile),
    )


@asynccontextmanager
async def serving(config: Config, out: io.StringIO) -> AsyncIterator[str]:
    """The daemon in this process on the memory broker; yields its address."""
    listening: list[str] = []
    async with trio.open_nursery() as nursery:
        root = await nursery.start(
            functools.partial(run_daemon, config, broker_url="memory://", out=out)
        )
        listening.append(out.getvalue().split("listening on ", 1)[1].split()[0])
        yield listening[0]
        root.request_stop()


async def test_the_api_answers_over_https_with_the_configured_certificate(
    authority: trustme.CA, pem: tuple[str, str], tmp_path: Path
) -> None:
    out = io.StringIO()
    async with serving(https_config(tmp_path, *pem), out) as url:
        assert url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context()
        authority.configure_trust(trusted)
        async with httpx.AsyncClient(verify=trusted) as client:
            health = await client.get(f"{url}/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            refused = await client.get(
                f"{url}/v1/balance", headers={"authorization": "Bearer rk_nobody"}
            )
            assert refused.status_code == 401
        async with httpx.AsyncClient() as untrusting:  # the system's authorities: not ours
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"{url}/healthz")
        plain = url.replace("https://", "http://")
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"{plain}/healthz")  # no plain HTTP on the TLS port


def test_a_certificate_without_its_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ConfigError) as refused:
        loads_config(f'[http]\ncertfile = "{tmp_path / "cert.pem"}"\n', environ={})
    assert str(refused.value) == (
        "http.keyfile must be set with http.certfile to serve HTTPS (it is missing)"
    )
    with pytest.raises(ConfigError, match=r'^http.certfile must name a PEM file \(got "/nope'):
        loads_config('[http]\ncertfile = "/nope.pem"\nkeyfile = "/nope.key"\n', environ={})


def test_a_pair_that_does_not_load_stops_the_start(pem: tuple[str, str], tmp_path: Path) -> None:
    certfile, _ = pem
    wrong = tmp_path / "wrong.key"
    wrong.write_text(trustme.CA().issue_cert("other").private_key_pem.bytes().decode())
    config = loads_config(f'[http]\ncertfile = "{certfile}"\nkeyfile = "{wrong}"\n', environ={})
    with pytest.raises(ConfigError, match="cannot serve HTTPS") as refused:
        check_config(config)
    assert refused.value.key == "http.certfile"
