"""The stack as users run it: `docker compose up --build --wait`, then requests through nginx.

Everything goes to nginx's published port on 127.0.0.1; what happens behind it is read from the
containers themselves (compose's state, their logs, /proc inside them).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import subprocess
import sys
from uuid import uuid4

import pytest
from websockets.exceptions import InvalidStatus

from harness.clients import http_get, open_ws, room_path
from harness.processes import LOOPBACK
from tests.conftest import report
from tests.containers.compose import ComposeStack, seconds_between
from tests.e2e.clients import (
    MAX_CLIENTS,
    UWSGI_REQUEST,
    ChatClient,
    PageParser,
    eventually,
    join,
    unique,
)

APP_UID = "10001"
# Daphne's access log: `ADDRESS:PORT - - [date] "WSCONNECT /ws/chat/room/" - -`.
DAPHNE_CONNECT = re.compile(r'^(?P<peer>\S+):\d+ - - \[[^]]+\] "WSCONNECT (?P<path>\S+)"', re.M)
# Time a duplicate or a stray message would need to show up after the expected ones arrived.
QUIET_SECONDS = 0.5


pytestmark = pytest.mark.containers


def test_up_leaves_every_service_healthy(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    by_service: dict[str, list[dict]] = {}
    for container in stack.containers():
        service = container["Config"]["Labels"]["com.docker.compose.service"]
        by_service.setdefault(service, []).append(container)
    expected = set(stack.services())
    assert set(by_service) == expected
    for service, containers in by_service.items():
        for container in containers:
            state = container["State"]
            if service == "setup":  # the one-shot: it ran and succeeded
                assert (state["Status"], state["ExitCode"]) == ("exited", 0), state
            elif stack.services()[service].get("healthcheck", {}).get("disable"):
                assert state["Running"], state
            else:
                assert state["Health"]["Status"] == "healthy", (service, state.get("Health"))
    if stack.process_manager == "compose":
        assert len(by_service["asgi"]) == 2
    size = int(stack.inspect_image("{{.Size}}"))
    setup = by_service["setup"][0]["State"]
    report(
        f"{stack.process_manager}: image {stack.image} {size / 1e6:.0f} MB; "
        + ", ".join(f"{phase} {seconds} s" for phase, seconds in stack.phases.items())
        + f"; setup ran {seconds_between(setup['StartedAt'], setup['FinishedAt']):.1f} s"
    )


def test_image_runs_as_the_app_user(compose_stack: ComposeStack) -> None:
    service = compose_stack.wsgi_service
    assert compose_stack.exec(service, "id", "-u").stdout.strip() == APP_UID
    assert compose_stack.inspect_image("{{.Config.User}}").split(":")[0] == APP_UID
    # Every server process in the container, not only the shell exec starts.
    owners = compose_stack.exec(
        service, "sh", "-c", "for s in /proc/[0-9]*/status; do grep '^Uid:' $s; done"
    ).stdout.split("\n")
    assert {line.split()[1] for line in owners if line} == {APP_UID}


def test_page_is_served_by_uwsgi(compose_stack: ComposeStack) -> None:
    marker = uuid4().hex
    status, headers, body = http_get(compose_stack, f"/chat/lobby/?probe={marker}")
    assert status == 200, body[:500]
    parser = PageParser()
    parser.feed(body.decode())
    assert "chat-log" in parser.ids
    logged = [
        match.groupdict()
        for match in UWSGI_REQUEST.finditer(compose_stack.logs(compose_stack.wsgi_service))
        if marker in match["uri"]
    ]
    assert [(entry["method"], entry["status"]) for entry in logged] == [("GET", "200")]


def test_hashed_static_file_has_cache_headers(compose_stack: ComposeStack) -> None:
    _, _, body = http_get(compose_stack, "/chat/lobby/")
    parser = PageParser()
    parser.feed(body.decode())
    (script,) = [src for src in parser.script_sources if src.startswith("/static/chat/room.")]
    assert re.fullmatch(r"/static/chat/room\.[0-9a-f]{12}\.js", script), script
    status, headers, content = http_get(compose_stack, script)
    assert status == 200
    assert b"WebSocket" in content
    assert headers.get("Cache-Control") == "max-age=604800"
    assert "Expires" in headers
    # nginx served it from the volume: uWSGI never saw the request.
    assert script not in compose_stack.logs(compose_stack.wsgi_service)


def test_room_fans_out_across_two_daphne_processes(compose_stack: ComposeStack) -> None:
    """Clients of one room held by different Daphne processes (supervisor: two processes in the
    app container; compose: two asgi replicas) each get every message exactly once."""
    stack = compose_stack

    async def scenario() -> None:
        room = unique("spread")
        clients: list[ChatClient] = []
        serving: list[tuple[int, int]] = []  # serving[i]: the (replica, pid) holding clients[i]
        held = stack.daphne_clients()
        try:
            while len(set(serving)) < 2 or len(clients) < 4:
                assert len(clients) < MAX_CLIENTS, f"{MAX_CLIENTS} clients all on {set(serving)}"
                clients.append(await join(stack, room))
                now = stack.daphne_clients()
                gained = [key for key in now if now[key] - held.get(key, 0)]
                assert len(gained) == 1, f"new connection on {gained}: {now}"
                serving.append(gained[0])
                held = now
            # One message from a client of each process: every member gets each, once.
            senders = {key: clients[serving.index(key)] for key in set(serving)}
            texts = sorted(f"from daphne {key}" for key in senders)
            for key, sender in senders.items():
                await sender.say(f"from daphne {key}")
            await eventually(lambda: all(len(c.messages) >= len(texts) for c in clients))
            await asyncio.sleep(QUIET_SECONDS)
            received = {index: sorted(client.messages) for index, client in enumerate(clients)}
            assert received == dict.fromkeys(range(len(clients)), texts), serving
            report(
                f"{stack.process_manager}: fan-out to {len(clients)} sockets held by "
                f"{len(set(serving))} Daphne processes (replica, pid): {sorted(set(serving))}"
            )
        finally:
            await asyncio.gather(*(client.close() for client in clients))

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_foreign_origin_is_refused(compose_stack: ComposeStack) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(compose_stack, room_path("lobby"), origin="http://evil.example")
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


def test_unknown_host_is_dropped_without_an_answer(compose_stack: ComposeStack) -> None:
    # 444: nginx closes the connection without writing a single byte.
    with pytest.raises(http.client.RemoteDisconnected):
        http_get(compose_stack, "/chat/lobby/", host="evil.example")
    status, _, _ = http_get(compose_stack, "/chat/lobby/")
    assert status == 200


def test_client_forwarded_for_is_not_believed(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    marker = uuid4().hex
    forged = "203.0.113.66"
    connection = http.client.HTTPConnection(LOOPBACK, stack.http_port, timeout=10)
    connection.request(
        "GET",
        f"/chat/lobby/?probe={marker}",
        headers={"Host": f"{stack.domain}:{stack.http_port}", "X-Forwarded-For": forged},
    )
    assert connection.getresponse().status == 200
    connection.close()
    room = unique("xff")

    async def websocket() -> None:
        from websockets.asyncio.client import connect

        async with connect(
            f"ws://{stack.domain}:{stack.http_port}{room_path(room)}",
            origin=stack.origin,
            host=LOOPBACK,
            port=stack.http_port,
            additional_headers={"X-Forwarded-For": forged},
        ):
            pass

    asyncio.run(websocket())
    peer = stack.gateway()  # where the published port's connections come from
    (page,) = [
        match
        for match in UWSGI_REQUEST.finditer(stack.logs(stack.wsgi_service))
        if marker in match["uri"]
    ]
    assert f" {peer} " in page.group(0), page.group(0)
    assert forged not in page.group(0)

    def connects() -> list[re.Match]:
        log = stack.logs(stack.asgi_service)
        return [m for m in DAPHNE_CONNECT.finditer(log) if room in m["path"]]

    asyncio.run(eventually(connects, what="Daphne logged the handshake"))
    assert [match["peer"] for match in connects()] == [peer]


def test_fresh_volumes_are_writable_by_the_app_user(compose_stack: ComposeStack) -> None:
    stack = compose_stack
    service = stack.wsgi_service
    for folder in (stack.env["DJANGO_STATIC_ROOT"], stack.env["DJANGO_DB_PATH"].rsplit("/", 1)[0]):
        probe = f"{folder}/.write-probe-{uuid4().hex}"
        stack.exec(service, "sh", "-c", f"touch {probe} && rm {probe}")
        owner = stack.exec(service, "stat", "-c", "%u", folder).stdout.strip()
        assert owner == APP_UID, folder
    mounts = {
        mount["Destination"]: mount["Type"] for mount in stack.containers_of(service)[0]["Mounts"]
    }
    assert mounts[stack.env["DJANGO_STATIC_ROOT"]] == "volume"


def test_ci_smoke_step_passes_and_can_fail(compose_stack: ComposeStack) -> None:
    """The generated CI's compose job smoke-tests the stack; run that very step here."""
    passed = compose_stack.run_workflow_step("Smoke test")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok  websocket round trip" in passed.stdout
    # The same script against a host name nginx does not serve: it must say so and fail.
    failed = subprocess.run(
        [sys.executable, "deploy/smoke.py", "--port", str(compose_stack.http_port)],
        cwd=compose_stack.project,
        env={"PATH": os.environ["PATH"], "NGINX_SERVER_NAME": "evil.example"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr
