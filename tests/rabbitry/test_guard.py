"""`rabbitry` refuses to run with a foreign `supervisor` package first on sys.path."""

import os
import subprocess
import sys
from pathlib import Path


def run_rabbitry(pythonpath: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Run outside the repository, so the installed Rabbitry competes with PYTHONPATH as it would
    # for a user (the repository root would otherwise come first as the script's directory).
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-c", "import sys, rabbitry; sys.exit(rabbitry.main(['--help']))"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_shadowing_supervisor_package_is_named_in_one_sentence(tmp_path: Path) -> None:
    # The Supervisor process manager's package is just `supervisor/__init__.py` plus modules.
    foreign = tmp_path / "supervisor"
    foreign.mkdir()
    (foreign / "__init__.py").write_text("# this is a package\n")
    result = run_rabbitry(str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "is not Rabbitry's" in result.stderr
    assert str(foreign / "__init__.py") in result.stderr
    assert "pip uninstall supervisor" in result.stderr


def test_rabbitry_supervisor_passes_the_guard(tmp_path: Path) -> None:
    result = run_rabbitry("", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: rabbitry" in result.stdout
