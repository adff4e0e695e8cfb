"""What an idempotent answer keeps for its replays: the answer without its secrets.

    stored = replay_body(answer)        # what the idempotency table holds and a retry gets
    # {"id": "acc_1f..", "api_key": "rk_Zx..", "currency": "EUR"} is kept as
    # {"id": "acc_1f..", "api_key": null, "currency": "EUR", "redacted": ["api_key"]}

An answer is stored so that a retry with the same `Idempotency-Key` gets it again; but the
database must not hold a secret the platform otherwise keeps only hashed (an API key) or shows
once (a webhook signing secret). So before it is stored, a JSON answer loses every secret: each
value of a field named in `SECRET_FIELDS`, and each string starting with a prefix of
`SECRET_PREFIXES` (`rk_`, `whsec_`), at any depth, becomes `null`, and the top-level object lists
the redacted fields under `redacted`, so a client can tell "not shown again" from "none".

What a replayed account creation answers, then: 201 with the same account id and currency,
`api_key` (and `webhook_secret`) null, `"redacted": ["api_key", ...]` and the
`Idempotent-Replayed: true` header. The account exists (the retry did not open a second one);
its key was shown once, to the first request, as at any creation. An answer without a secret is
kept byte for byte. Non-JSON answers (a PDF) are kept as they are: they hold no secret.
"""

from __future__ import annotations

import msgspec

from rabbitry.gateway._http import JSON, Answer

SECRET_FIELDS = frozenset({"api_key", "webhook_secret"})
"""Answer fields that hold a secret shown once: never stored."""

SECRET_PREFIXES = ("rk_", "whsec_")
"""How the platform's secrets begin (API keys, webhook signing secrets): never stored."""

REDACTED_FIELD = "redacted"
"""The top-level field listing what a stored answer lost, sorted."""


def replay_body(answer: Answer) -> bytes:
    """`answer`'s body as it may be stored and replayed: without secrets (see the module)."""
    if answer.content_type.split(";")[0].strip() != JSON:
        return answer.body
    try:
        document = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        return answer.body
    redacted: set[str] = set()
    cleaned = _without_secrets(document, "", redacted)
    if not redacted:
        return answer.body
    if isinstance(cleaned, dict):
        cleaned[REDACTED_FIELD] = sorted(redacted)
    return msgspec.json.encode(cleaned)


def _without_secrets(value: object, name: str, redacted: set[str]) -> object:
    if isinstance(value, dict):
        return {key: _without_secrets(item, key, redacted) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_secrets(item, name, redacted) for item in value]
    if value is not None and (
        name in SECRET_FIELDS or (isinstance(value, str) and value.startswith(SECRET_PREFIXES))
    ):
        redacted.add(name or "value")
        return None
    return value
