"""Container healthcheck: exit 0 when every given TCP port on this host accepts a connection.

Usage: python deploy/healthcheck.py [PORT ...]   (compose.yaml names the ports per service;
with none, the port in WSGI_PORT: the image's default healthcheck)
"""

import os
import socket
import sys


def main(ports: list[str]) -> int:
    """Try each port once; report the first that refuses."""
    ports = ports or [os.environ.get("WSGI_PORT", "")]
    for port in ports:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
        except (OSError, ValueError) as error:
            print(f"port {port}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
