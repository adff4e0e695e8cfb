"""What an idempotent answer keeps for its replays: everything but its secrets."""

import json

from rabbitry.gateway._http import Answer, json_answer
from rabbitry.gateway._replay import replay_body


def test_an_answer_without_a_secret_is_kept_byte_for_byte() -> None:
    answer = Answer(202, b'{"messages": [{"id": "msg_1", "price": "0.045"}], "x":  1}')
    assert replay_body(answer) == answer.body
    pdf = Answer(200, b"%PDF rk_not_json", "application/pdf")
    assert replay_body(pdf) == pdf.body
    assert replay_body(Answer(200, b"{not json")) == b"{not json"


def test_secrets_become_null_and_are_named() -> None:
    created = json_answer(
        201,
        {"id": "acc_1", "api_key": "rk_abc", "webhook_secret": "whsec_def", "currency": "EUR"},
    )
    assert json.loads(replay_body(created)) == {
        "id": "acc_1",
        "api_key": None,
        "webhook_secret": None,
        "currency": "EUR",
        "redacted": ["api_key", "webhook_secret"],
    }


def test_a_secret_is_found_by_its_prefix_at_any_depth() -> None:
    nested = json_answer(200, {"keys": [{"current": "rk_1"}, {"old": "whsec_2"}], "n": "rk"})
    stored = replay_body(nested)
    assert b"rk_1" not in stored
    assert b"whsec_2" not in stored
    assert json.loads(stored) == {
        "keys": [{"current": None}, {"old": None}],
        "n": "rk",
        "redacted": ["current", "old"],
    }
