"""The README's examples are the example files, and they run as the README says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```", re.DOTALL)


def run_example(name: str, *arguments: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_readme_embeds_every_example_verbatim() -> None:
    embedded = EMBEDDED.findall((ROOT / "README.md").read_text())
    assert sorted(path for path, _ in embedded) == [
        "examples/hello_broker.py",
        "examples/hello_tree.py",
        "examples/verify_webhook.py",
    ]
    for path, code in embedded:
        assert code == (ROOT / path).read_text(), f"README's copy of {path} is stale"


def test_the_tree_example_prints_what_the_readme_promises() -> None:
    lines = run_example("hello_tree.py")
    assert lines[:3] == ["500", "ActorCrashed", "250"]
    ledger = next(line for line in lines if line.strip().startswith("ledger"))
    assert "running" in ledger
    assert "restarts=1" in ledger
    assert "ValueError: a charge must be >= 0 cents (got -1)" in ledger


@pytest.mark.parametrize(
    "url",
    ["memory://", pytest.param("amqp://guest:guest@127.0.0.1:5672/", marks=pytest.mark.rabbitmq)],
)
def test_the_broker_example_tops_up_and_answers_by_rpc(url: str) -> None:
    assert run_example("hello_broker.py", url) == ["balance of account 42: 875 cents"]
