"""Full-stack fixtures: one native stack per process manager, a headless Chromium, log tails.

The `stack` fixture is session-scoped and parametrized over the process managers, so pytest runs
every test against the supervisor stack, stops it, then runs them all against the compose stack.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack import Stack
from tests.conftest import require_binary

PROCESS_MANAGERS = ["supervisor", "compose"]
# The venv this suite runs in holds the project's Python servers (as the image's PATH does).
VENV_BIN = str(Path(sys.executable).parent)
SYSTEM_BINARIES = ["nginx", "redis-server", "envsubst"]
VENV_BINARIES = ["python", "uwsgi", "daphne", "supervisord"]


def pytest_configure(config: pytest.Config) -> None:
    """Register `process_managers`, which limits a test to some of the stacks."""
    config.addinivalue_line(
        "markers", "process_managers(*names): run the test only against these stacks"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests whose `process_managers` mark excludes their stack parameter, and run
    test_faults.py last against each stack.

    The fault tests leave the stack serving again, but a Redis restart leaves each Daphne
    process with pooled connections to the old server, which fail once when next used (the
    consumer using one is closed with 1011 and logs a traceback); the other tests' log checks
    would see that. pytest has already grouped the tests by stack; a stable sort keeps that.
    """
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("process_managers")
        callspec = getattr(item, "callspec", None)
        manager = callspec.params.get("stack") if callspec else None
        if marker is not None and manager is not None and manager not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = sorted(kept, key=_stack_then_faults_last)


def _stack_then_faults_last(item: pytest.Item) -> tuple[int, bool]:
    callspec = getattr(item, "callspec", None)
    manager = callspec.params.get("stack") if callspec else None
    order = PROCESS_MANAGERS.index(manager) if manager in PROCESS_MANAGERS else -1
    return order, item.path.name == "test_faults.py"


@pytest.fixture(scope="session")
def binaries() -> dict[str, str]:
    """The path of every server binary the stack runs (a missing one skips, or fails in CI)."""
    found = {name: require_binary(name) for name in SYSTEM_BINARIES}
    found.update({name: require_binary(name, VENV_BIN) for name in VENV_BINARIES})
    return found


@pytest.fixture(scope="session", params=PROCESS_MANAGERS)
def stack(
    request: pytest.FixtureRequest,
    bake_once,
    binaries: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The baked project (with this process manager) running natively on 127.0.0.1."""
    project = bake_once(process_manager=request.param)
    running = Stack(project, tmp_path_factory.mktemp(f"stack-{request.param}"), binaries)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium driven by Debian's chromedriver (options from DESIGN.md's traps)."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def start_chromium(folder: Path, env: dict[str, str] | None = None):
    """Headless Chromium with its profile and logs in `folder`; `env` for chromedriver and the
    browser (HOME decides which NSS database of trusted certificates Chromium reads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver")
    options = Options()
    options.binary_location = chromium
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={folder / 'profile'}",
    ]:
        options.add_argument(argument)
    service = Service(chromedriver, log_output=str(folder / "chromedriver.log"), env=env)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver
