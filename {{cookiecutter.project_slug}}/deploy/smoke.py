"""Smoke test of the running stack through nginx, with nothing but Python's standard library.

    python deploy/smoke.py [--address 127.0.0.1] [--port HTTP_PORT] [--host NGINX_SERVER_NAME]
                           [--https-port HTTPS_PORT] [--cafile CA.pem]

Checks, in order:
  1. the room page comes from Django (200, with the chat log on it);
  2. its stylesheet is a hashed static file, served with a cache lifetime;
  3. two WebSockets in one room both receive a message one of them sends
     (nginx -> Daphne -> Redis -> Daphne -> nginx and back);
  4. with https (HTTPS_PORT set): 1-3 over https and wss, verifying the certificate for the host
     name (--cafile: a CA to trust besides the system's), and http:// redirects to https://.
Exits 0 when all pass; otherwise prints the step that failed and exits 1. CI runs it after
`docker compose up --wait`; run it after a deploy too. --port, --host and --https-port default to
HTTP_PORT, NGINX_SERVER_NAME and HTTPS_PORT from the environment (`set -a; . ./.env; set +a`).
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import sys
import uuid

TIMEOUT_SECONDS = 10
# RFC 6455: the server proves it speaks WebSocket by hashing the client's key with this GUID.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA
STYLESHEET = re.compile(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"')


class SmokeError(Exception):
    """A check failed; the text says which and what was seen."""


class Site:
    """Where the stack answers: the TCP address and port, the host name nginx serves, and the
    TLS context that verifies it (None: plain http)."""

    def __init__(self, address: str, port: int, host: str, tls: ssl.SSLContext | None) -> None:
        self.address, self.port, self.host, self.tls = address, port, host, tls
        self.origin = f"{'https' if tls else 'http'}://{host}:{port}"

    def connect(self) -> socket.socket:
        """A connection to nginx; over TLS, sending and verifying the host name (SNI)."""
        sock = socket.create_connection((self.address, self.port), timeout=TIMEOUT_SECONDS)
        return self.tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET `path` through nginx: status, headers, body."""
        connection = http.client.HTTPConnection(self.address, self.port, timeout=TIMEOUT_SECONDS)
        connection.sock = self.connect()
        try:
            connection.request("GET", path, headers={"Host": f"{self.host}:{self.port}"})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


class WebSocket:
    """A minimal RFC 6455 client: text frames out (masked), text frames in, pings answered."""

    def __init__(self, site: Site, path: str) -> None:
        self.sock = site.connect()
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {site.host}:{site.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\nOrigin: {site.origin}\r\n\r\n"
            ).encode()
        )
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        digest = hashlib.sha1((key + WEBSOCKET_GUID).encode(), usedforsecurity=False).digest()
        accept = base64.b64encode(digest)
        if " 101 " not in f"{status} " or accept.decode() not in head:
            raise SmokeError(f"WebSocket handshake to {path} answered {status!r}")

    def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SmokeError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SmokeError("the server closed the connection during the handshake")
            self.buffer += chunk
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, 0x80 | length])
        elif length < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, data: dict) -> None:
        """Send one text frame holding `data` as JSON."""
        self._send(OPCODE_TEXT, json.dumps(data).encode())

    def receive_json(self) -> dict:
        """The next text frame from the server, parsed (pings are answered on the way)."""
        while True:
            first, second = self._read_exactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._read_exactly(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read_exactly(8), "big")
            payload = self._read_exactly(length)
            opcode = first & 0x0F
            if opcode == OPCODE_PING:
                self._send(OPCODE_PONG, payload)
            elif opcode == OPCODE_CLOSE:
                raise SmokeError(f"the server closed the WebSocket: {payload!r}")
            elif opcode == OPCODE_TEXT:
                return json.loads(payload)

    def close(self) -> None:
        """Say goodbye (close code 1000) and drop the connection."""
        try:
            self._send(OPCODE_CLOSE, (1000).to_bytes(2, "big"))
        finally:
            self.sock.close()


def check_page(site: Site) -> bytes:
    """1. The room page comes from Django."""
    status, _, body = site.get("/chat/lobby/")
    if status != 200 or b'id="chat-log"' not in body:
        raise SmokeError(f"/chat/lobby/ answered {status} without the chat log")
    return body


def check_static(site: Site, page: bytes) -> str:
    """2. The page's stylesheet is a hashed static file with a cache lifetime."""
    found = STYLESHEET.search(page.decode())
    if found is None:
        raise SmokeError("the room page links no hashed stylesheet (is collectstatic run?)")
    status, headers, _ = site.get(found[1])
    cache = headers.get("Cache-Control", "")
    if status != 200 or "max-age=" not in cache:
        raise SmokeError(f"{found[1]} answered {status}, Cache-Control {cache!r}")
    return found[1]


def check_websocket(site: Site) -> str:
    """3. A message reaches both members of a room."""
    path = f"/ws/chat/smoke-{uuid.uuid4().hex[:12]}/"
    text = f"smoke {uuid.uuid4().hex}"
    first = WebSocket(site, path)
    try:
        second = WebSocket(site, path)
        try:
            first.send_json({"message": text})
            for member in (first, second):
                frame = member.receive_json()
                if frame.get("message") != text:
                    raise SmokeError(f"{path}: expected our message back, got {frame}")
        finally:
            second.close()
    finally:
        first.close()
    return path


def check_redirect(plain: Site, site: Site) -> str:
    """4. Plain http answers with a redirect to the same path over https."""
    status, headers, _ = plain.get("/chat/lobby/")
    wanted = f"https://{site.host}{'' if site.port == 443 else f':{site.port}'}/chat/lobby/"
    if status != 301 or headers.get("Location") != wanted:
        raise SmokeError(f"http:// answered {status} to {headers.get('Location')!r}, not {wanted}")
    return wanted


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--address", default="127.0.0.1", help="where nginx listens")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HTTP_PORT", "80")))
    parser.add_argument("--host", default=os.environ.get("NGINX_SERVER_NAME", "localhost"))
    parser.add_argument("--https-port", default=os.environ.get("HTTPS_PORT", ""))
    parser.add_argument("--cafile", help="a CA certificate to trust (a test certificate's)")
    options = parser.parse_args(argv)
    plain = site = Site(options.address, options.port, options.host, None)
    if options.https_port:
        context = ssl.create_default_context(cafile=options.cafile)
        site = Site(options.address, int(options.https_port), options.host, context)
    try:
        if site is not plain:
            print(f"ok  http:// redirects to {check_redirect(plain, site)}")
        page = check_page(site)
        print(f"ok  page {site.origin}/chat/lobby/")
        print(f"ok  static {check_static(site, page)}")
        print(f"ok  websocket round trip {check_websocket(site)}")
    except (SmokeError, OSError, ValueError, http.client.HTTPException) as error:
        print(f"FAILED {error!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
