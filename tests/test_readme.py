"""The README's example is the example file, and the example runs as the README says."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_embeds_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- example: (\S+) -->\n```python\n(.*?)```", readme, re.DOTALL)
    assert match is not None, "README lost its embedded example"
    assert match.group(2) == (ROOT / match.group(1)).read_text()


def test_the_example_prints_what_the_readme_promises() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hello_tree.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == ["500", "ActorCrashed", "250"]
    ledger = next(line for line in lines if line.strip().startswith("ledger"))
    assert "running" in ledger
    assert "restarts=1" in ledger
    assert "ValueError: a charge must be >= 0 cents (got -1)" in ledger
