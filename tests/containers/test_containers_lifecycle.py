"""The stack's life after the first `up`: a rebuild over the existing volumes, a graceful stop, and
a `down --volumes` that leaves nothing behind. These run last against each stack.
"""

from __future__ import annotations

import re
import subprocess
import time
from uuid import uuid4

import pytest

from harness.clients import http_get
from tests.conftest import report
from tests.containers.compose import ComposeStack, seconds_between

pytestmark = pytest.mark.containers

STYLESHEET = re.compile(r'href="(/static/chat/chat\.[0-9a-f]{12}\.css)"')
# 128 + SIGKILL: Docker had to kill the container when its grace period ran out.
SIGKILLED = 137


def stylesheet(stack: ComposeStack) -> str:
    """The hashed stylesheet URL the room page links."""
    status, _, body = http_get(stack, "/chat/lobby/")
    assert status == 200
    (url,) = STYLESHEET.findall(body.decode())
    return url


def test_rebuild_after_a_code_change_runs_setup_on_the_existing_volumes(
    compose_stack: ComposeStack,
) -> None:
    stack = compose_stack
    before = stylesheet(stack)
    (setup,) = stack.containers_of("setup")
    marker = f"/* rebuilt {uuid4().hex} */\n"
    with (stack.project / "chat/static/chat/chat.css").open("a", encoding="utf-8") as css:
        css.write(marker)
    seconds = stack.up()
    (rerun,) = stack.containers_of("setup")
    assert rerun["State"]["StartedAt"] != setup["State"]["StartedAt"], "setup ran again"
    assert (rerun["State"]["Status"], rerun["State"]["ExitCode"]) == ("exited", 0)
    after = stylesheet(stack)
    assert after != before, "the changed file got a new hashed name"
    status, _, content = http_get(stack, after)
    assert status == 200
    assert marker.encode() in content
    report(f"{stack.process_manager}: rebuild after a code change: up --build --wait {seconds} s")


def test_stop_is_graceful_and_down_leaves_nothing(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    services = stack.services()
    running = [c for c in stack.containers() if c["State"]["Running"]]
    assert running
    started = time.time()
    stack.compose("stop")
    took = time.time() - started
    stopped = {c["Id"]: c for c in stack.containers()}
    lines = []
    for container in running:
        state = stopped[container["Id"]]["State"]
        service = container["Config"]["Labels"]["com.docker.compose.service"]
        grace = grace_seconds(services[service])
        stop_seconds = epoch(state["FinishedAt"]) - started
        lines.append(
            f"{container['Name'].lstrip('/')} exit {state['ExitCode']} {stop_seconds:.1f} s"
        )
        assert state["ExitCode"] != SIGKILLED, f"{service} was killed after {grace} s"
        assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']}"
        assert stop_seconds < grace, f"{service} took {stop_seconds:.1f} s (grace {grace} s)"
    report(f"{stack.process_manager}: `stop` in {took:.1f} s: " + ", ".join(sorted(lines)))

    stack.compose("down", "--volumes")
    label = f"label=com.docker.compose.project={stack.name}"
    for kind in ("container", "volume", "network"):
        listing = ["ls", "--all", "--quiet"] if kind == "container" else ["ls", "--quiet"]
        left = subprocess.run(
            ["docker", kind, *listing, "--filter", label],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert left == [], f"{kind}s left after down --volumes: {left}"


def grace_seconds(service: dict) -> float:
    """The service's stop_grace_period in seconds (Docker's default: 10 s)."""
    value = service.get("stop_grace_period", "10s")
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(value))
    assert match, value
    return int(match[1] or 0) * 60 + float(match[2] or 0)


def epoch(stamp: str) -> float:
    """Seconds since the epoch of one of Docker's RFC 3339 timestamps."""
    return seconds_between("1970-01-01T00:00:00Z", stamp)
