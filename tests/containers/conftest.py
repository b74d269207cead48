"""Container fixtures: each process manager's bake, brought up by the real `docker compose`.

The `compose_stack` fixture is session-scoped and parametrized over the process managers: pytest
runs every container test against the supervisor stack, takes it down, then the compose stack.
Within a stack the files run in FILE_ORDER: the lifecycle tests (rebuild, stop, down) come last.

Needs a reachable Docker engine and Compose v2; without them the tests skip, and with
REQUIRE_E2E=1 (CI) they fail. Registry images come from a registry where one answers, else from
local stand-ins (tests/containers/images.py); the report at the end says which.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from harness.bake import read_env
from tests.conftest import REQUIRE_E2E, report
from tests.containers import images
from tests.containers.compose import ComposeStack, compose_cli, engine_reachable

PROCESS_MANAGERS = ["supervisor", "compose"]
FILE_ORDER = [
    "test_containers_stack.py",
    "test_containers_faults.py",
    "test_containers_lifecycle.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order container tests by stack, then FILE_ORDER; other tests keep their places."""
    places = [i for i, item in enumerate(items) if item.path.name in FILE_ORDER]

    def key(item: pytest.Item) -> tuple[int, int]:
        callspec = getattr(item, "callspec", None)
        manager = callspec.params.get("compose_stack") if callspec else None
        order = PROCESS_MANAGERS.index(manager) if manager in PROCESS_MANAGERS else -1
        return order, FILE_ORDER.index(item.path.name)

    for place, item in zip(places, sorted((items[i] for i in places), key=key), strict=True):
        items[place] = item


def missing(message: str) -> None:
    """Skip the test for want of `message`, or fail when REQUIRE_E2E=1 (CI)."""
    if REQUIRE_E2E:
        pytest.fail(f"{message}, and REQUIRE_E2E=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def compose_cli_argv() -> list[str]:
    """The Compose v2 command line (a reachable engine is required)."""
    if not engine_reachable():
        missing("no Docker engine answers (`docker info`; .ci/run starts dockerd)")
    argv = compose_cli()
    if argv is None:
        missing("Docker Compose v2 is not installed (scripts/test.sh installs the plugin)")
    return argv


@pytest.fixture(scope="session", params=PROCESS_MANAGERS)
def compose_stack(
    request: pytest.FixtureRequest,
    bake_once,
    compose_cli_argv: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComposeStack]:
    """The baked project (with this process manager) up under `docker compose`, healthy."""
    manager = request.param
    project = tmp_path_factory.mktemp(f"containers-{manager}") / "project"
    shutil.copytree(bake_once(process_manager=manager), project)
    shutil.copy(project / ".env", project.parent / "baked.env")
    for image in images.named_images(project):
        started = time.monotonic()
        source = images.ensure(image)
        report(f"{manager}: image {image}: {source}, ready in {time.monotonic() - started:.1f} s")
    scale = ["--scale", "asgi=2"] if manager == "compose" else []
    stack = ComposeStack(project, f"rtc-{manager}-{os.getpid()}", compose_cli_argv, scale)
    baked = read_env(project, project.parent / "baked.env")
    if stack.env["MAX_OPEN_FILES"] != baked["MAX_OPEN_FILES"]:
        report(
            f"{manager}: this engine grants {stack.engine_open_files} open files per container:"
            f" MAX_OPEN_FILES and NGINX_WORKER_CONNECTIONS lowered to fit in .env"
        )
    try:
        # The build alone first, so its time is known; then what users run, on the built image.
        stack.phases["build"] = stack.build()
        stack.phases["up --build --wait"] = stack.up()
        yield stack
    finally:
        stack.down()
