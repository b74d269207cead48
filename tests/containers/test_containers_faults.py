"""Faults on the running containers: a service killed and started again, Redis killed and started
again, a server process crashing inside its container. Each time the stack must serve pages again
and clients that reconnect (as room.js does) must chat again; the report says how long it took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from websockets.exceptions import InvalidHandshake

from harness.clients import http_get
from tests.conftest import report
from tests.containers.compose import ComposeError, ComposeStack
from tests.containers.conftest import missing
from tests.e2e.clients import (
    ChatClient,
    chat_across,
    eventually,
    join,
    join_every_daphne,
    unique,
)

pytestmark = pytest.mark.containers

RECOVERY_TIMEOUT = 90.0
# Containers started, at most, to take a stopped server's address.
SQUATTERS = 8


def page_ok(stack: ComposeStack) -> bool:
    """True when the room page comes back 200 through nginx."""
    try:
        return http_get(stack, "/chat/lobby/")[0] == 200
    except OSError:
        return False


async def chat_on_every_daphne(stack: ComposeStack, timeout: float) -> bool:
    """True when a room with a member on every running Daphne process gets a message to all of
    them: each process has its channel layer back (one that is still reconnecting to Redis would
    miss the message)."""
    room = unique("back")
    clients: list[ChatClient] = []
    try:
        await join_every_daphne(stack, room, clients, at_least=2)
        await clients[0].say("again")
        await eventually(lambda: all(c.messages == ["again"] for c in clients), timeout=timeout)
        return True
    except (AssertionError, OSError, ComposeError, InvalidHandshake):
        return False
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def wait_until_chatting(stack: ComposeStack, since: float) -> float:
    """Poll until a page loads and a room spanning every Daphne process chats; return the
    seconds since `since`."""
    deadline = since + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        if await asyncio.to_thread(page_ok, stack) and await chat_on_every_daphne(stack, 5):
            return time.monotonic() - since
        await asyncio.sleep(0.2)
    raise AssertionError(f"the stack did not serve and chat again within {RECOVERY_TIMEOUT:.0f} s")


async def members(stack: ComposeStack, room: str, count: int) -> list[ChatClient]:
    """`count` clients in `room`, checked to chat before the fault."""
    clients = [await join(stack, room) for _ in range(count)]
    await clients[0].say("before")
    await eventually(lambda: all(client.messages == ["before"] for client in clients))
    return clients


def test_killed_server_service_is_started_again(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    service = stack.asgi_service

    async def scenario() -> float:
        clients = await members(stack, unique("killed"), 2)
        started = time.monotonic()
        stack.compose("kill", service)
        await eventually(lambda: all(client.closed for client in clients), what="sockets closed")
        stack.compose("start", service)
        return await wait_until_chatting(stack, started)

    seconds = asyncio.run(scenario())
    states = [container["State"] for container in stack.containers_of(service)]
    assert all(state["Running"] for state in states), states
    report(
        f"{stack.process_manager}: `kill {service}` + `start`: chatting again in {seconds:.1f} s"
    )


def test_killed_redis_is_started_again(compose_stack: ComposeStack) -> None:
    """Sockets open across the restart keep chatting (`chat_across`), and so do new ones."""
    stack = compose_stack
    started = time.monotonic()

    def restart() -> None:
        stack.compose("kill", "redis")
        stack.compose("start", "redis")

    asyncio.run(asyncio.wait_for(chat_across(stack, unique("across"), restart, timeout=60), 120))
    seconds = asyncio.run(wait_until_chatting(stack, started))
    report(f"{stack.process_manager}: `kill redis` + `start`: chatting again in {seconds:.1f} s")


def replica(stack: ComposeStack, number: int) -> dict:
    """The inspected container of the ASGI service with this replica number."""
    (container,) = [
        c
        for c in stack.containers_of(stack.asgi_service)
        if int(c["Config"]["Labels"]["com.docker.compose.container-number"]) == number
    ]
    return container


def test_crashed_server_process_is_restarted(compose_stack: ComposeStack) -> None:
    """supervisor restarts a Daphne killed inside the app container; under the compose choice
    Daphne is the container's main process, and Docker's restart policy brings it back."""
    stack = compose_stack
    if stack.process_manager == "compose" and os.geteuid() != 0:
        missing("killing a container's main process from the host needs root")

    async def scenario() -> tuple[tuple[int, int], int, float]:
        clients = await members(stack, unique("crash"), 2)
        holders = sorted(key for key, count in stack.daphne_clients().items() if count)
        number, pid = holders[0]
        restarts = replica(stack, number)["RestartCount"]
        started = time.monotonic()
        if stack.process_manager == "supervisor":
            stack.exec(stack.asgi_service, "sh", "-c", f"kill -KILL {pid}", index=number)
        else:  # a crash, not `docker kill` (which Docker counts as a stop by hand)
            os.kill(replica(stack, number)["State"]["Pid"], signal.SIGKILL)
        await eventually(lambda: any(client.closed for client in clients), what="a socket closed")
        seconds = await wait_until_chatting(stack, started)
        await asyncio.gather(*(client.close() for client in clients))
        return (number, pid), restarts, seconds

    (number, pid), restarts, seconds = asyncio.run(scenario())
    running = stack.daphne_clients()
    assert len(running) == 2, f"two Daphne processes again: {running}"
    if stack.process_manager == "supervisor":
        assert (number, pid) not in running, "supervisor started a new process"
    else:
        assert replica(stack, number)["RestartCount"] == restarts + 1, "Docker restarted it"
    report(f"{stack.process_manager}: Daphne killed (-9): chatting again in {seconds:.1f} s")


def address(stack: ComposeStack, service: str) -> str:
    """The service's (first replica's) address on the project network."""
    (container, *_) = stack.containers_of(service)
    return container["NetworkSettings"]["Networks"][stack.network]["IPAddress"]


def nginx_healthcheck(stack: ComposeStack) -> int:
    """Run nginx's own compose healthcheck in its container now; its exit code."""
    test = stack.services()["nginx"]["healthcheck"]["test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return stack.exec("nginx", *argv, check=False).returncode


def test_server_back_on_another_address_is_followed(compose_stack: ComposeStack) -> None:
    """The pages' server stops, another container takes its address, the server starts on a new
    one: nginx must follow (not send every page to the old address), and nginx's healthcheck must
    fail while it cannot reach the server."""
    stack = compose_stack
    service = stack.wsgi_service
    old = address(stack, service)
    stack.compose("stop", service)
    assert nginx_healthcheck(stack) != 0, "nginx reported healthy without its upstream"
    squatters: list[str] = []
    try:
        # Docker hands a freed address to the next container that asks for one.
        while len(squatters) < SQUATTERS:
            squatters.append(stack.run_beside("sleep", "600"))
            if old in stack.container_addresses(squatters[-1]):
                break
        else:
            raise AssertionError(f"no container took {old} back; cannot move {service}")
        started = time.monotonic()
        stack.compose("start", service)
        new = address(stack, service)
        assert new != old
        seconds = asyncio.run(wait_until_chatting(stack, started))
        assert nginx_healthcheck(stack) == 0
    finally:
        for squatter in squatters:
            stack.remove_container(squatter)
    report(
        f"{stack.process_manager}: {service} back on {new} (was {old}, now another container's):"
        f" serving again in {seconds:.1f} s"
    )
