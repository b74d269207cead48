"""What every part of the benchmark shares: where it lives, the page it loads, a log line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PAGE = "/chat/lobby/"
CORES = os.cpu_count() or 1


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators ("-" for none)."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"
