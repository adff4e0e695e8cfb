"""Secrets: values that are shown masked everywhere and revealed only on purpose.

    >>> key = Secret("change-me")
    >>> key, str(key), key.reveal()
    (Secret('***'), '***', 'change-me')
    >>> url = SecretURL("amqp://guest:guest@127.0.0.1:5672/?auth_token=t0k&heartbeat=30")
    >>> print(url)
    amqp://***@127.0.0.1:5672/?auth_token=***&heartbeat=30

`repr`, `str`, JSON output (`conf.config_json`) and error messages all use the masked form; the
only way to the value is `.reveal()`, so a `grep reveal` finds every place a secret leaves.

What is secret, by name (`is_secret_name`; the one rule, used for URL query parameters, for an
application's free-form option tables, and by the logs): a name that contains one of
`SECRET_WORDS` (password, passwd, passphrase, secret, token, key, credential, authorization,
signature), whatever its case, or that is one of `SECRET_NAMES` (pass, pwd, auth...). So
`sslpassword`, `api_key`, `X-Api-Secret` and `Authorization` are secret names; `region` is not.
A URL shows neither its user-info nor the value of a query (or fragment) parameter with a secret
name (`mask_url`); in free text, `mask_urls_in` masks the password of `scheme://user:pass@` and
those parameters.

A list of URLs (the nodes of one RabbitMQ cluster) is written comma-separated, and each URL in
it is masked:

    >>> urls = SecretURLs("amqp://u:p@rabbit1/v,amqp://u:p@rabbit2/v")
    >>> print(urls)
    amqp://***@rabbit1/v,amqp://***@rabbit2/v
    >>> [str(url) for url in urls.split()]
    ['amqp://***@rabbit1/v', 'amqp://***@rabbit2/v']
"""

import hmac
import re
import urllib.parse

__all__ = [
    "SECRET_NAMES",
    "SECRET_WORDS",
    "Secret",
    "SecretURL",
    "SecretURLs",
    "is_secret_name",
    "mask_url",
    "mask_urls_in",
    "split_url",
    "split_urls",
]

SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "credential",
    "authorization",
    "signature",
)
"""A name containing one of these (in any case) holds a secret."""

SECRET_NAMES = frozenset({"pass", "pwd", "pw", "auth", "sig"})
"""Names (in any case) that hold a secret though they contain no word of `SECRET_WORDS`."""

MASK = "***"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
_USERINFO = re.compile(r"^[^/?#]*@")
# `?name=value` (or after `&`, `;`, `#`): a parameter of a query string or fragment.
_PARAMETER = re.compile(r"(?P<lead>[?&;#])(?P<name>[^=&;#?\s'\"<>]+)=(?P<value>[^&;#\s'\"<>]*)")
# `scheme://user:password@` in free text: the user and password are masked, as `mask_url` does.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]*:[^\s/?#'\"<>]*@"
)


def is_secret_name(name: str) -> bool:
    """Whether a value named `name` (a key, an option, a header, a query parameter) is secret.

    >>> [is_secret_name(name) for name in ("sslpassword", "X-Api-Secret", "pass", "region")]
    [True, True, True, False]
    """
    lowered = name.lower()
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


# A comma that starts the next URL of a list: followed by `scheme://` (a comma inside one URL,
# e.g. in a password, is not followed by one).
_NEXT_URL = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_url(url: str) -> tuple[str, str]:
    """`url`'s scheme in lower case and what follows `://`; `("", "")` when it has no scheme.

    >>> split_url("SQLite:///./var/rabbitry.db")
    ('sqlite', '/./var/rabbitry.db')
    """
    match = _SCHEME.match(url)
    return (match["scheme"].lower(), match["rest"]) if match else ("", "")


def split_urls(text: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list (one URL alone is a list of one), blanks stripped.

    A comma splits only where the next URL begins (`scheme://`), so a comma inside one URL stays.

    >>> split_urls("amqp://a/, amqp://b/")
    ('amqp://a/', 'amqp://b/')
    >>> split_urls("amqp://u:p,w@a/")
    ('amqp://u:p,w@a/',)
    """
    return tuple(_NEXT_URL.split(text.strip()))


def mask_url(url: str) -> str:
    """`url` with any user and password, and the value of every query or fragment parameter with
    a secret name (`is_secret_name`), replaced by `***` (each URL of a comma-separated list).

    >>> mask_url("postgresql://app:s3cret@db:5432/ledger?sslpassword=k3y&sslmode=require")
    'postgresql://***@db:5432/ledger?sslpassword=***&sslmode=require'
    >>> mask_url("amqp://u:p@a/,amqp://u:p@b/")
    'amqp://***@a/,amqp://***@b/'
    """
    urls = split_urls(url)
    if len(urls) > 1:
        return ",".join(_mask_one(one) for one in urls)
    return _mask_one(url)


def _mask_one(url: str) -> str:
    scheme, rest = split_url(url)
    if not scheme:
        return _mask_parameters(_USERINFO.sub(f"{MASK}@", url))
    return f"{url[: len(scheme)]}://{_mask_parameters(_USERINFO.sub(f'{MASK}@', rest))}"


def mask_urls_in(text: str) -> str:
    """`text` (a log line, an error) with the password of every `scheme://user:password@` and
    the value of every `?name=value` or `&name=value` with a secret name replaced by `***`.

    >>> mask_urls_in("GET /hook?token=abc&id=7 from amqp://guest:guest@mq/ and amqp://guest@mq/")
    'GET /hook?token=***&id=7 from amqp://***@mq/ and amqp://guest@mq/'
    """
    return _mask_parameters(_URL_PASSWORD.sub(rf"\g<scheme>{MASK}@", text))


def _mask_parameters(text: str) -> str:
    def masked(match: re.Match[str]) -> str:
        name = urllib.parse.unquote_plus(match["name"])
        if not match["value"] or not is_secret_name(name):
            return match[0]
        return f"{match['lead']}{match['name']}={MASK}"

    return _PARAMETER.sub(masked, text)


class Secret:
    """A string that never shows itself: `repr` and `str` are masked, `.reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a string (got a {type(value).__name__})")
        self._value = value

    def reveal(self) -> str:
        """The secret itself: call this only where it is handed to what needs it."""
        return self._value

    @property
    def masked(self) -> str:
        """What is shown instead of the value."""
        return "***"

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Secret)
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __reduce__(self) -> tuple[type["Secret"], tuple[str]]:
        return (type(self), (self._value,))


class SecretURL(Secret):
    """A URL that may carry a password: shown with its user and password masked."""

    __slots__ = ()

    @property
    def masked(self) -> str:
        """The URL with `***` in place of `user:password`."""
        return mask_url(self._value)


class SecretURLs(SecretURL):
    """One URL or a comma-separated list of them (a TOML list is joined with commas), each masked.

    It equals a `SecretURL` of the same text, so a single URL reads as it always did.
    """

    __slots__ = ()

    def split(self) -> tuple[SecretURL, ...]:
        """Each URL of the list, as a `SecretURL` of its own."""
        return tuple(SecretURL(url) for url in split_urls(self._value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretURL):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.reveal().encode())

    def __hash__(self) -> int:
        return hash((SecretURL, self._value))
