"""Shared fixtures of the template's tests: baking projects and finding the binaries they need."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
COOKIECUTTER_JSON = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
# Answers a choice cannot bake without: a CA validates only a public name (pre_gen refuses
# localhost for https=letsencrypt).
CHOICE_NEEDS = {("https", "letsencrypt"): {"domain_name": "chat.example.com"}}
REQUIRE_E2E = os.environ.get("REQUIRE_E2E") == "1"


# What the tests measured on the way (image sources, phase times, recoveries, memory per socket):
# printed after the results, because a number is only worth its command and its context.
REPORT: list[str] = []


def report(line: str) -> None:
    """Add a line to the report printed after the tests."""
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT:
        terminalreporter.section("what the tests measured")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """When a test on a running stack fails (native or containers: anything with log_tails()),
    attach the tail of every server's log to its report."""
    result = yield
    if result.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if callable(getattr(value, "log_tails", None)):
                result.sections.append((f"server logs ({name})", value.log_tails()))
    return result


def require_binary(name: str, search_path: str | None = None) -> str:
    """Return the path of `name`; skip the test without it, or fail when REQUIRE_E2E=1 (CI).

    `search_path` looks in those folders instead of PATH (the venv's bin, unactivated).
    """
    path = shutil.which(name, path=search_path)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if REQUIRE_E2E:
            pytest.fail(f"{message}, and REQUIRE_E2E=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    return path


def default_answers() -> dict:
    """The answers --no-input would give, with choice lists reduced to their first entry."""
    return {
        key: value[0] if isinstance(value, list) else value
        for key, value in COOKIECUTTER_JSON.items()
        if not key.startswith("_")
    }


Bake = Callable[..., Path]


@pytest.fixture
def bake(cookies) -> Bake:
    """Bake the template with the defaults overridden by keyword arguments; return the project.

    The bake must succeed: a failed bake fails the test with cookiecutter's error.
    """

    def _bake(**overrides: str) -> Path:
        result = cookies.bake(extra_context=overrides)
        assert result.exception is None, f"bake failed: {result.exception}"
        assert result.exit_code == 0
        return Path(result.project_path)

    return _bake


@pytest.fixture(scope="session")
def bake_once(cookies_session) -> Callable[..., Path]:
    """Like `bake`, but each set of answers is baked once per session (for read-only use)."""
    baked: dict[tuple, Path] = {}

    def _bake(**overrides: str) -> Path:
        key = tuple(sorted(overrides.items()))
        if key not in baked:
            result = cookies_session.bake(extra_context=overrides)
            assert result.exception is None, f"bake failed: {result.exception}"
            baked[key] = Path(result.project_path)
        return baked[key]

    return _bake
