"""The in-process limit: the project's WSGI application called in a loop, no server, no socket.

Run in the baked project's folder with the stack's environment, so Django loads the same
settings and database the servers use. Prints one JSON line: requests per second of this one
process (single thread) and the CPU seconds each request took.

Usage: python inprocess.py <path> <seconds>
"""

import io
import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())


def environ(path: str) -> dict:
    """What uWSGI hands Django for `GET path` through nginx (uwsgi_params, trimmed)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_X_FORWARDED_PROTO": "http",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    from config.wsgi import application

    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def one() -> None:
        body = application(environ(path), start_response)
        try:
            b"".join(body)
        finally:
            if hasattr(body, "close"):
                body.close()

    for _ in range(200):  # warm up: imports, template cache, first queries
        one()
    count = 0
    cpu_start, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            one()
        count += 50
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    assert statuses[-1].startswith("200"), statuses[-1]
    print(json.dumps({"requests_per_s": count / wall, "cpu_ms_per_request": 1000 * cpu / count}))


if __name__ == "__main__":
    main()
