"""How the daemon reconnects to RabbitMQ (for ever unless `[broker] give_up_after` says) and how
it says it gave up: one sentence, URLs masked, not "cannot start"."""

import math

import pytest

from broker import ReconnectFailed, ReconnectPolicy
from conf import Broker, SecretURLs
from rabbitry.daemon._run import broker_options, report_gave_up

CLUSTER = "amqp://app:s3cret@rabbit1:5672/sms,amqp://app:s3cret@rabbit2:5672/sms"


def test_the_daemon_reconnects_for_ever_unless_a_budget_is_set() -> None:
    assert broker_options("memory://", Broker()) == {}
    forever = broker_options(CLUSTER, Broker(url=SecretURLs(CLUSTER)))["reconnect"]
    assert isinstance(forever, ReconnectPolicy)
    assert forever.give_up_after == math.inf
    budget = broker_options(CLUSTER, Broker(give_up_after=30.0))["reconnect"]
    assert budget.give_up_after == 30.0


def test_giving_up_is_one_sentence_with_every_url_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = ReconnectFailed(
        "the connection to RabbitMQ ... gave up",
        budget=30.0,
        attempts=12,
        cause="ConnectionRefusedError: [Errno 111] Connect call failed ('10.0.0.1', 5672)",
    )
    report_gave_up(error, CLUSTER, 3 * 3600 + 4 * 60 + 5)
    said = capsys.readouterr().err
    assert said == (
        "rabbitry: gave up on RabbitMQ at amqp://***@rabbit1:5672/sms,amqp://***@rabbit2:5672/sms: "
        "no connection for 30 s ([broker] give_up_after) after the daemon had run 3 h 4 min 5 s, "
        "in 12 attempts to reconnect, the last failing with ConnectionRefusedError: [Errno 111] "
        "Connect call failed ('10.0.0.1', 5672); start the daemon again once RabbitMQ is back\n"
    )
