"""The carrier side: a carrier that refuses our credentials is retried more and more slowly."""

from typing import Any, cast

import pytest
import trio

from rabbitry.carriers import Accepted, AuthenticationFailed, Submission
from rabbitry.platform import CarrierSide


class Scripted:
    """A connector whose logins follow `script`: each entry is how many seconds the connection
    stays up before the carrier refuses our credentials (0: refused at once)."""

    name = "strict"

    def __init__(self, script: list[float]) -> None:
        self.script = script
        self.attempts: list[float] = []

    async def run(self, events: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.attempts.append(trio.current_time())
        await trio.sleep(self.script[len(self.attempts) - 1])
        raise AuthenticationFailed("ESME_RINVPASWD", code="ESME_RINVPASWD")

    async def submit(self, submission: Submission) -> Accepted:
        raise AssertionError("not used")

    def health(self) -> str:
        return "down"


async def waits_between_logins(script: list[float]) -> list[float]:
    connector = Scripted(script)
    unused = cast(Any, None)  # the connection alone is under test: it publishes nothing
    side = CarrierSide(
        "strict",
        cast(Any, connector),
        publisher=unused,
        accounts=unused,
        names=unused,
        schedule=unused,
    )
    for _ in script:
        with pytest.raises(AuthenticationFailed):
            await side.run_connector(cast(Any, connector))
    ups = [0.0, *script]
    return [
        round(b - a - up, 3)
        for a, b, up in zip(connector.attempts, connector.attempts[1:], ups[1:], strict=False)
    ]


async def test_refused_logins_wait_longer_each_time_up_to_ten_minutes(autojump_clock: Any) -> None:
    assert await waits_between_logins([0] * 8) == [30, 60, 120, 240, 480, 600, 600]


async def test_a_connection_that_stayed_up_starts_the_count_again(autojump_clock: Any) -> None:
    assert await waits_between_logins([0, 0, 100, 0]) == [30, 60, 30]
