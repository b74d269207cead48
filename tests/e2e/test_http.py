"""Pages through nginx come from uWSGI; /static/ comes from the collected folder, not uWSGI."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.clients import UWSGI_REQUEST, PageParser, http_get
from tests.e2e.stack import Stack, wait_until


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
