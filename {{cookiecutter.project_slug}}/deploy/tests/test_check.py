"""The config checker passes on this project, as the bake hook and CI require."""

import subprocess
import sys
from pathlib import Path

CHECKER = Path(__file__).resolve().parent.parent / "check.py"


def test_configs_agree() -> None:
    """deploy/check.py finds no disagreement between this project's config files."""
    result = subprocess.run(
        [sys.executable, str(CHECKER)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout
