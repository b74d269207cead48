"""Requests to a running stack, always through nginx: a page over HTTP, a WebSocket handshake.

nginx's default server drops requests for unknown host names (444), so every request names the
site's domain; WebSocket handshakes send the Origin a browser on the site would send, which
Channels' AllowedHostsOriginValidator requires. Any `Site` works: the native `Stack`, and
tests/containers' `ComposeStack`.
"""

from __future__ import annotations

import asyncio
import http.client
from typing import Protocol
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect

from harness.processes import LOOPBACK


class Site(Protocol):
    """What a client needs to know of a running stack."""

    http_port: int
    domain: str

    @property
    def origin(self) -> str: ...


def http_get(site: Site, path: str, *, host: str | None = None) -> tuple[int, dict, bytes]:
    """GET `path` from nginx as `host` (default: the site's domain): status, headers, body."""
    connection = http.client.HTTPConnection(LOOPBACK, site.http_port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host or f"{site.domain}:{site.http_port}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def ws_url(site: Site, path: str) -> str:
    """The ws:// URL of `path` on the site (the TCP connection goes to 127.0.0.1)."""
    return f"ws://{site.domain}:{site.http_port}{path}"


def room_path(room: str) -> str:
    """The WebSocket path of a room, percent-encoding what a URL cannot hold."""
    return f"/ws/chat/{quote(room, safe='/')}/"


async def open_ws(site: Site, path: str, *, origin: str | None = None) -> ClientConnection:
    """Open a WebSocket to `path` through nginx, as a page of the site would."""
    return await connect(
        ws_url(site, path),
        origin=origin or site.origin,
        host=LOOPBACK,
        port=site.http_port,
        open_timeout=10,
        max_size=2**21,
        ping_interval=None,
    )


def ws_handshake_ok(site: Site) -> bool:
    """True when a WebSocket to a room opens through nginx."""

    async def handshake() -> bool:
        try:
            websocket = await open_ws(site, room_path("ready"))
        except Exception:  # noqa: BLE001 - whatever the failure, it is not serving yet
            return False
        await websocket.close()
        return True

    return asyncio.run(handshake())
