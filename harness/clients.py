"""Requests to a running stack, always through nginx: a page over HTTP, a WebSocket handshake.

nginx's default server drops requests for unknown host names (444), so every request names the
site's domain; WebSocket handshakes send the Origin a browser on the site would send, which
Channels' AllowedHostsOriginValidator requires. Any `Site` works: the native `Stack`, and
tests/containers' `ComposeStack`.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from typing import Protocol
from urllib.parse import quote

from cryptography import x509
from websockets.asyncio.client import ClientConnection, connect

from harness.processes import LOOPBACK


class Site(Protocol):
    """What a client needs to know of a running stack (a TLS site: `https_port`, and a
    `tls_context` that trusts its certificate; plain sites may lack both)."""

    http_port: int
    domain: str

    @property
    def origin(self) -> str: ...


def tls_of(site: Site) -> tuple[int, ssl.SSLContext] | None:
    """(https port, context) when the site is served over TLS, else None."""
    port, context = getattr(site, "https_port", None), getattr(site, "tls_context", None)
    return (port, context) if port and context else None


class LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that sends and verifies the site's name (SNI), as a browser would."""

    def __init__(self, name: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(LOOPBACK, port, context=context, timeout=timeout)
        self.site_name = name

    def connect(self) -> None:
        sock = socket.create_connection((LOOPBACK, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.site_name)


def http_get(
    site: Site, path: str, *, host: str | None = None, scheme: str | None = None
) -> tuple[int, dict, bytes]:
    """GET `path` from nginx as `host` (default: the site's domain): status, headers, body.

    Over https on a TLS site, unless `scheme="http"` asks for its plain-http port.
    """
    tls = tls_of(site) if scheme != "http" else None
    if tls is None:
        port = site.http_port
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    else:
        port, context = tls
        connection = LoopbackHTTPSConnection(site.domain, port, context, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host or f"{site.domain}:{port}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def unverified_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate: for asking what is served, not
    whether it is trusted."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def served_certificate(site: Site, context: ssl.SSLContext | None = None) -> x509.Certificate:
    """The certificate nginx presents for the site's name now (a fresh TLS connection to its
    https port), verified with `context` (default: the site's `tls_context`)."""
    context = context or site.tls_context
    with (
        socket.create_connection((LOOPBACK, site.https_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=site.domain) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def ws_url(site: Site, path: str) -> str:
    """The ws:// (wss:// on a TLS site) URL of `path` (the TCP connection goes to 127.0.0.1)."""
    tls = tls_of(site)
    if tls is not None:
        return f"wss://{site.domain}:{tls[0]}{path}"
    return f"ws://{site.domain}:{site.http_port}{path}"


def room_path(room: str) -> str:
    """The WebSocket path of a room, percent-encoding what a URL cannot hold."""
    return f"/ws/chat/{quote(room, safe='/')}/"


async def open_ws(site: Site, path: str, *, origin: str | None = None) -> ClientConnection:
    """Open a WebSocket to `path` through nginx, as a page of the site would."""
    tls = tls_of(site)
    return await connect(
        ws_url(site, path),
        origin=origin or site.origin,
        host=LOOPBACK,
        port=site.http_port if tls is None else tls[0],
        open_timeout=10,
        max_size=2**21,
        ping_interval=None,
        **({} if tls is None else {"ssl": tls[1], "server_hostname": site.domain}),
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
