"""The SMPP connector's options, as a `[[carriers]]` table's `options` gives them, checked.

    [[carriers]]
    name = "acme"
    plugin = "smpp"
    prefixes = ["+33"]
    options = { host = "smpp.acme.example", port = 2775, system_id = "rabbitry",
                password_env = "ACME_SMPP_PASSWORD", bind = "transceiver" }

    options = SmppOptions.parse("acme", {"host": "127.0.0.1", "port": 2775, ...})

Options (a wrong one raises `ValueError` naming the option and the value; never the password):

- `host` (str), `port` (1..65535, default 2775), `system_id` (at most 15 characters),
  `password` (at most 8; a `conf.Secret` or a str, kept as a Secret), `system_type` (default "").
- `bind`: "transceiver" (default: one session both ways) or "transmitter+receiver" (a pair).
- `source_ton` / `source_npi`: by default 5/0 for an alphanumeric sender and 1/1 for a number;
  `dest_ton` / `dest_npi` (default 1/1). A leading "+" is dropped from numbers on the wire.
- `service_type` (default ""), `registered_delivery` (0..255, default 1: a receipt per part).
- `enquire_link_interval` (s, default 30), `response_timeout` (s, default 10), `max_timeouts`
  (response timeouts in a row that drop the session, default 3), `connect_timeout` (10),
  `unbind_timeout` (2).
- `throttle_delay` (s, default 1): the pause an ESME_RTHROTTLED asks for; `queue_full_delay`
  (s, default 10): the pause an ESME_RMSGQFUL asks for.
- `reassembly_timeout` (s, default 60): how long parts of an inbound SMS wait for the others.
- `submit_id_format` / `receipt_id_format`: "text" (default), "hex" or "decimal": how the ids of
  submit_sm_resp and of receipts are read (see `rabbitry.carriers.smpp._receipts`).
- `tls` (default false): SMPP over TLS (many SMSCs offer it on its own port, often 3550 or
  8775); the SMSC's certificate is verified against the system's authorities, or those of
  `tls_ca_file` (a PEM file), for the name `tls_server_name` (default: `host`). `tls_verify =
  false` turns the verification off, for a test bench only.

The window of submits in flight is not an option here: `CarrierLink` (the carrier's `window`)
keeps it.
"""

import os
import ssl
from collections.abc import Mapping
from typing import Literal, TypeVar

import attrs

from conf import Secret
from rabbitry.carriers.smpp._receipts import ID_FORMATS, IdFormat

_Choice = TypeVar("_Choice", bound=str)

BindMode = Literal["transceiver", "transmitter+receiver"]
BIND_MODES: tuple[BindMode, ...] = ("transceiver", "transmitter+receiver")


@attrs.frozen
class SmppOptions:
    """The SMPP connector's options, checked (see the module docstring)."""

    host: str
    system_id: str
    password: Secret
    port: int = 2775
    system_type: str = ""
    bind: BindMode = "transceiver"
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    service_type: str = ""
    registered_delivery: int = 1
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    max_timeouts: int = 3
    connect_timeout: float = 10.0
    unbind_timeout: float = 2.0
    throttle_delay: float = 1.0
    queue_full_delay: float = 10.0
    reassembly_timeout: float = 60.0
    submit_id_format: IdFormat = "text"
    receipt_id_format: IdFormat = "text"
    tls: bool = False
    tls_ca_file: str | None = None
    tls_verify: bool = True
    tls_server_name: str | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context of the connection, or None for plain TCP."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @classmethod
    def parse(cls, name: str, options: Mapping[str, object]) -> "SmppOptions":
        """Checks `options` of carrier `name`; raises `ValueError` naming a wrong one."""
        known = set(attrs.fields_dict(cls))
        for key in options:
            if key not in known:
                raise ValueError(
                    f"carriers.{name}.options.{key} is not an smpp option"
                    f" (known: {', '.join(sorted(known))})"
                )
        check = _Checker(name, options)
        source_ton = check.octet("source_ton", None)
        source_npi = check.octet("source_npi", None)
        if (source_ton is None) != (source_npi is None):
            raise ValueError(
                f"carriers.{name}.options.source_ton and source_npi go together: set both or"
                f" neither (got source_ton={source_ton!r}, source_npi={source_npi!r})"
            )
        return cls(
            host=check.text("host", None, 253, required=True),
            port=check.integer("port", 2775, 1, 65535),
            system_id=check.text("system_id", None, 15, required=True),
            password=check.password(),
            system_type=check.text("system_type", "", 12),
            bind=check.choice("bind", "transceiver", BIND_MODES),
            source_ton=source_ton,
            source_npi=source_npi,
            dest_ton=check.octet("dest_ton", 1) or 0,
            dest_npi=check.octet("dest_npi", 1) or 0,
            service_type=check.text("service_type", "", 5),
            registered_delivery=check.octet("registered_delivery", 1) or 0,
            enquire_link_interval=check.seconds("enquire_link_interval", 30.0),
            response_timeout=check.seconds("response_timeout", 10.0),
            max_timeouts=check.integer("max_timeouts", 3, 1, 1_000_000),
            connect_timeout=check.seconds("connect_timeout", 10.0),
            unbind_timeout=check.seconds("unbind_timeout", 2.0),
            throttle_delay=check.seconds("throttle_delay", 1.0),
            queue_full_delay=check.seconds("queue_full_delay", 10.0),
            reassembly_timeout=check.seconds("reassembly_timeout", 60.0),
            submit_id_format=check.choice("submit_id_format", "text", ID_FORMATS),
            receipt_id_format=check.choice("receipt_id_format", "text", ID_FORMATS),
            tls=check.flag("tls", default=False),
            tls_ca_file=check.pem_file("tls_ca_file"),
            tls_verify=check.flag("tls_verify", default=True),
            tls_server_name=check.text("tls_server_name", "", 253) or None,
        )


class _Checker:
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        self.name = name
        self.options = options

    def _where(self, key: str) -> str:
        return f"carriers.{self.name}.options.{key}"

    def _value(self, key: str, default: object) -> object:
        value = self.options.get(key, default)
        # Values read from the environment come as Secrets; only the password stays one.
        return value.reveal() if isinstance(value, Secret) else value

    def text(self, key: str, default: str | None, limit: int, *, required: bool = False) -> str:
        value = self._value(key, default)
        if value is None and required:
            raise ValueError(f"{self._where(key)} is required (a string)")
        if not isinstance(value, str) or len(value) > limit or (required and not value):
            raise ValueError(
                f"{self._where(key)} must be a{' non-empty' if required else ''} string of at"
                f" most {limit} characters (got {value!r})"
            )
        if not value.isascii() or "\x00" in value:
            raise ValueError(f"{self._where(key)} must be printable ASCII (got {value!r})")
        return value

    def password(self) -> Secret:
        value = self.options.get("password")
        if isinstance(value, str):
            value = Secret(value)
        if not isinstance(value, Secret):
            raise ValueError(
                f"{self._where('password')} is required (a string, or password_env naming the"
                f" environment variable that holds it; got a {type(value).__name__})"
            )
        plain = value.reveal()
        if len(plain) > 8 or not plain.isascii() or "\x00" in plain:
            raise ValueError(
                f"{self._where('password')} must be at most 8 ASCII characters, as SMPP 3.4"
                f" allows (got {len(plain)} characters)"
            )
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._value(key, default)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(
                f"{self._where(key)} must be an integer from {low} to {high} (got {value!r})"
            )
        return value

    def octet(self, key: str, default: int | None) -> int | None:
        if self.options.get(key) is None and default is None:
            return None
        return self.integer(key, default if default is not None else 0, 0, 255)

    def seconds(self, key: str, default: float) -> float:
        value = self._value(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
            raise ValueError(f"{self._where(key)} must be a number of seconds > 0 (got {value!r})")
        return float(value)

    def flag(self, key: str, *, default: bool) -> bool:
        value = self._value(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self._where(key)} must be true or false (got {value!r})")
        return value

    def pem_file(self, key: str) -> str | None:
        value = self._value(key, None)
        if value is None:
            return None
        if not isinstance(value, str) or not os.path.isfile(value):
            raise ValueError(f"{self._where(key)} must name a PEM file (got {value!r})")
        return value

    def choice(self, key: str, default: _Choice, choices: tuple[_Choice, ...]) -> _Choice:
        value = self._value(key, default)
        for choice in choices:
            if value == choice:
                return choice
        raise ValueError(
            f"{self._where(key)} must be one of {', '.join(map(repr, choices))} (got {value!r})"
        )
