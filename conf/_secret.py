"""Secrets: values that are shown masked everywhere and revealed only on purpose.

    >>> key = Secret("change-me")
    >>> key, str(key), key.reveal()
    (Secret('***'), '***', 'change-me')
    >>> url = SecretURL("amqp://guest:guest@127.0.0.1:5672/")
    >>> print(url)
    amqp://***@127.0.0.1:5672/

`repr`, `str`, JSON output (`conf.config_json`) and error messages all use the masked form; the
only way to the value is `.reveal()`, so a `grep reveal` finds every place a secret leaves.

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

__all__ = ["Secret", "SecretURL", "SecretURLs", "mask_url", "split_url", "split_urls"]

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
_USERINFO = re.compile(r"^[^/?#]*@")
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
    """`url` with any user and password replaced by `***` (each URL of a comma-separated list).

    >>> mask_url("postgresql://app:s3cret@db:5432/ledger")
    'postgresql://***@db:5432/ledger'
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
        return _USERINFO.sub("***@", url)
    return f"{url[: len(scheme)]}://{_USERINFO.sub('***@', rest)}"


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
