"""The demo tree shows what it promises: crashes, backoff, restarts, a graceful stop."""

import pytest
import trio
import trio.testing

from rabbitry.cli._tree_demo import run_demo


async def test_demo_crashes_backs_off_restarts_and_stops_gracefully(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await run_demo(seconds=3.0, interval=1.0)
    output = capsys.readouterr().out
    assert status == 0
    trees = output.split("== tree at ")[1:]
    assert [tree.split("\n")[0] for tree in trees] == ["t=1.0s", "t=2.0s", "t=3.0s"]
    flaky = [line for line in output.splitlines() if line.strip().startswith("carrier:flaky")]
    assert any("backing_off" in line and "retry in" in line for line in flaky)
    assert "restarts=0" not in flaky[-1]
    assert "last: CarrierDownError: connection reset while submitting message" in flaky[-1]
    senders = [line for line in output.splitlines() if line.strip().startswith("senders-")]
    assert any("ValueError: message 7 cannot be encoded" in line for line in senders)
    assert output.rstrip().endswith("every child stopped in reverse start order")


def test_demo_command_rejects_a_non_positive_duration(capsys: pytest.CaptureFixture[str]) -> None:
    from rabbitry.cli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["demo", "--seconds", "0"])
    assert exit_info.value.code == 2
    assert "must be a number > 0 (got '0')" in capsys.readouterr().err
