"""`[webhooks]`: how the daemon calls the URLs its customers give (callbacks, inbound webhooks).

    [webhooks]
    allow_private_addresses = false     # the default: customers' URLs must be public
    # signing_key: from RABBITRY_WEBHOOK_SIGNING_KEY, not from the file

    >>> Webhooks().allow_private_addresses, Webhooks().signing_key
    (False, None)

`allow_private_addresses = true` lets a customer's URL name (or resolve to) loopback, private,
link-local, unique-local, multicast or unspecified addresses: for a test bench or a closed
network, never on the internet. `signing_key` is the master key every account's webhook secret
is derived from (rabbitry.platform signs each webhook with its account's secret); left out, the
daemon generates one and keeps it in its store, so whoever reads the database can sign webhooks.

The rule beyond the types (`problems`): a signing key that is set is at least
`MIN_SIGNING_KEY_LENGTH` characters.
"""

from collections.abc import Iterator
from typing import Annotated

from msgspec import Meta

from conf import Problem, Secret, Table

__all__ = ["MIN_SIGNING_KEY_LENGTH", "Webhooks", "webhooks_problems"]

MIN_SIGNING_KEY_LENGTH = 32
"""The fewest characters of `[webhooks] signing_key` (32 from `secrets.token_urlsafe(32)` carry
192 bits)."""


class Webhooks(Table, frozen=True):
    """`[webhooks]`: the customers' callback and webhook URLs, and how webhooks are signed."""

    allow_private_addresses: Annotated[
        bool,
        Meta(
            description=(
                "Whether a customer's callback_url or webhook_url may name or resolve to a "
                "loopback, private, link-local, unique-local, multicast or unspecified address; "
                "checked when the URL is given and again when it is called. Keep it false on the "
                "internet."
            )
        ),
    ] = False
    signing_key: Annotated[
        Secret | None,
        Meta(
            description=(
                "The master key the accounts' webhook secrets are derived from, at least 32 "
                "characters: python -c 'import secrets; print(secrets.token_urlsafe(32))'. "
                "Changing it changes every account's webhook secret. Left out, the daemon "
                "generates one and keeps it in its store. Env RABBITRY_WEBHOOK_SIGNING_KEY "
                "overrides."
            )
        ),
    ] = None


EXAMPLE_SIGNING_KEY = "replace-with-a-generated-key-of-32-characters-or-more"
"""The signing key deploy/example.env shows: refused."""


def webhooks_problems(webhooks: Webhooks) -> Iterator[Problem]:
    """The rules of `[webhooks]` beyond its types."""
    key = webhooks.signing_key
    if key is not None and key.reveal().lower() == EXAMPLE_SIGNING_KEY:
        rule = (
            "is the example of deploy/example.env; generate one with python -c 'import secrets;"
            " print(secrets.token_urlsafe(32))'"
        )
        yield ("webhooks", "signing_key"), rule
    elif key is not None and len(key.reveal()) < MIN_SIGNING_KEY_LENGTH:
        rule = (
            f"must be at least {MIN_SIGNING_KEY_LENGTH} characters (got {len(key.reveal())});"
            " generate one with python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            " or leave it out"
        )
        yield ("webhooks", "signing_key"), rule
