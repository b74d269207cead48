"""Pages through nginx come from uWSGI; /static/ comes from the collected folder, not uWSGI; what
a client controls in a request (Host, header sizes) never turns into an error."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys

import pytest

from harness.clients import http_get
from harness.processes import LOOPBACK, wait_until
from harness.stack import Stack
from tests.e2e.clients import UWSGI_REQUEST, PageParser


def uwsgi_requests(stack: Stack, offset: int) -> list[dict]:
    """The requests uWSGI logged after `offset` in its server's log."""
    text = stack.wsgi_server.log_since(offset)
    return [match.groupdict() for match in UWSGI_REQUEST.finditer(text)]


@pytest.mark.e2e
def test_room_page_is_served_by_uwsgi(stack: Stack) -> None:
    offset = stack.wsgi_server.log_size()
    status, _, body = http_get(stack, "/chat/lobby/")
    assert status == 200
    page = PageParser()
    page.feed(body.decode())
    assert {"chat-log", "chat-message-input", "connection-state", "chat-form"} <= page.ids
    assert json.loads(page.scripts["room-name"]) == "lobby"
    logged = wait_until(
        lambda: [r for r in uwsgi_requests(stack, offset) if r["uri"] == "/chat/lobby/"],
        timeout=5,
        what="uWSGI's request log line for /chat/lobby/",
    )
    assert [(r["method"], r["status"]) for r in logged] == [("GET", "200")]


@pytest.mark.e2e
def test_static_file_is_served_by_nginx_from_the_collected_folder(stack: Stack) -> None:
    """The page names its script by a content-hashed name; nginx serves that file from the
    collected folder, cacheable for days, and uWSGI never sees the request."""
    offset = stack.wsgi_server.log_size()
    status, _, body = http_get(stack, "/chat/lobby/")
    assert status == 200
    page = PageParser()
    page.feed(body.decode())
    (script,) = page.script_sources
    assert re.fullmatch(r"/static/chat/room\.[0-9a-f]{12}\.js", script), script

    status, headers, served = http_get(stack, script)
    assert status == 200
    collected = stack.static_root / script.removeprefix("/static/")
    assert served == collected.read_bytes()
    assert served == (stack.project / "chat" / "static" / "chat" / "room.js").read_bytes()
    assert headers["Content-Type"].startswith("application/javascript")
    assert "max-age=604800" in headers["Cache-Control"]
    wait_until(lambda: uwsgi_requests(stack, offset), timeout=5, what="the page's log line")
    assert [r["uri"] for r in uwsgi_requests(stack, offset)] == ["/chat/lobby/"]


# Sent on every answer, whoever makes it: Django (its middleware) on pages, nginx on the rest.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@pytest.mark.e2e
def test_security_headers_are_sent_once_on_pages_and_static_files(stack: Stack) -> None:
    """A header sent twice (nginx's and Django's) is a misconfiguration to scanners, and some
    browsers read a doubled X-Frame-Options as invalid: each comes exactly once, on a page from
    uWSGI, on a static file nginx serves, and on nginx's own 404."""
    _, _, body = http_get(stack, "/chat/lobby/")
    page = PageParser()
    page.feed(body.decode())
    for path in ("/chat/lobby/", page.script_sources[0], "/static/no-such-file.css"):
        connection = http.client.HTTPConnection(LOOPBACK, stack.http_port, timeout=10)
        connection.request("GET", path, headers={"Host": f"{stack.domain}:{stack.http_port}"})
        response = connection.getresponse()
        response.read()
        connection.close()
        for name, value in SECURITY_HEADERS.items():
            sent = [v for k, v in response.getheaders() if k.lower() == name.lower()]
            assert sent == [value], (path, name, sent)


# Host headers a client controls: nginx's $host reduces each to a name it serves or drops the
# request; the raw value must never reach Django (which logs an ERROR for a host it refuses).
HOSTILE_HOSTS = {
    "port-is-a-word": ("/chat/lobby/", "{domain}:evil"),
    "userinfo": ("/chat/lobby/", "{domain}:80@evil.example"),
    "two-ports": ("/chat/lobby/", "{domain}:8000:1"),
    "absolute-uri-foreign-host": ("http://{domain}/chat/lobby/", "evil.example"),
    "absolute-uri-foreign-target": ("http://evil.example/chat/lobby/", "{domain}"),
}


@pytest.mark.e2e
@pytest.mark.parametrize(("target", "host"), HOSTILE_HOSTS.values(), ids=HOSTILE_HOSTS.keys())
def test_hostile_host_never_reaches_django(stack: Stack, target: str, host: str) -> None:
    sizes = stack.log_sizes()
    connection = http.client.HTTPConnection(LOOPBACK, stack.http_port, timeout=10)
    try:
        connection.request(
            "GET",
            target.format(domain=stack.domain),
            headers={"Host": host.format(domain=stack.domain)},
        )
        status = connection.getresponse().status
    except http.client.RemoteDisconnected:
        status = 444  # nginx closed the connection without an answer
    finally:
        connection.close()
    assert status in (200, 444)
    assert stack.errors_since(sizes) == []


@pytest.mark.e2e
def test_requests_with_every_header_nginx_accepts_reach_the_page(stack: Stack) -> None:
    """Three 7 KB cookies (21 KB of headers, inside nginx's 4 x 8k) pass uWSGI's buffer."""
    cookies = [f"c{n}=" + "v" * 7000 for n in range(3)]
    connection = http.client.HTTPConnection(LOOPBACK, stack.http_port, timeout=10)
    try:
        connection.putrequest("GET", "/chat/lobby/", skip_host=True)
        connection.putheader("Host", f"{stack.domain}:{stack.http_port}")
        for cookie in cookies:
            connection.putheader("Cookie", cookie)
        connection.endheaders()
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.mark.e2e
def test_shipped_smoke_test_passes(stack: Stack) -> None:
    """deploy/smoke.py (what the project's CI runs after `up`) passes through nginx over http."""
    command = [sys.executable, "deploy/smoke.py", "--port", str(stack.http_port)]
    result = subprocess.run(  # noqa: S603 - the project's own script
        [*command, "--host", stack.domain, "--https-port", ""],
        cwd=stack.project,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  websocket round trip" in result.stdout
