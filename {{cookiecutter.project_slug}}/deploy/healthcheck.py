"""Container healthcheck: exit 0 when every given server on this host answers.

Usage: python deploy/healthcheck.py [PORT | http:PORT ...]
  PORT        the port accepts a TCP connection (uWSGI speaks its own protocol);
  http:PORT   an HTTP request gets an HTTP response: a Daphne process really answered, not
              just a listening socket that supervisord holds for its fcgi-program.
With no argument: the port in WSGI_PORT (the image's default healthcheck); compose.yaml names the
ports of each service.
"""

import http.client
import os
import socket
import sys

TIMEOUT_SECONDS = 2


def answers(target: str) -> None:
    """Raise OSError (or ValueError) unless `target` answers."""
    scheme, _, port = target.rpartition(":")
    if scheme == "http":
        connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=TIMEOUT_SECONDS)
        try:
            connection.request("HEAD", "/", headers={"Host": "127.0.0.1"})
            connection.getresponse()
        finally:
            connection.close()
    else:
        socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT_SECONDS).close()


def main(targets: list[str]) -> int:
    """Try each target once; report the first that does not answer."""
    for target in targets or [os.environ.get("WSGI_PORT", "")]:
        try:
            answers(target)
        except (OSError, ValueError, http.client.HTTPException) as error:
            print(f"{target}: {error!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
