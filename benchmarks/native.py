"""The native target: the baked compose.yaml's commands as host processes (harness.stack), and
the servers the comparisons start beside them.

`NativeBench` offers what the sections use on either target (`ContainerBench` in containers.py
has the same): `target`, `env`, `http_port`, `server_pids()`, `memory()`, `daphne_spread()`,
`run_in_process()`, `stop()`, `stop_all()`; and, natively only, `reconfigure()` and extra
servers (`start_extra()`, `stop_extra()`).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

from benchmarks import procstats
from benchmarks.common import BENCH, PAGE, log
from harness.processes import LOOPBACK, established_sockets, free_ports, wait_until
from harness.stack import Server, Stack

# The layer is chosen the way a deployment chooses it, with CHANNEL_LAYER (settings.py). Only
# the sharded run needs a settings module of its own: NativeBench writes it to a folder on the
# servers' PYTHONPATH and selects it with DJANGO_SETTINGS_MODULE (the baked settings.py stays
# untouched).
LAYER_SETTINGS = {
    "pubsub-2-redis": """import os

from config.settings import *  # noqa: F403
from config.settings import REDIS_URL, redis_channel_layer

_layer = redis_channel_layer(REDIS_URL, "pubsub")
_host = _layer["CONFIG"]["hosts"][0]
_layer["CONFIG"]["hosts"] = [
    {**_host, "address": url} for url in (REDIS_URL, os.environ["BENCH_REDIS_URL_2"])
]
CHANNEL_LAYERS = {"default": _layer}
""",
}


class NativeBench:
    """One baked project, its native stack, and the extra servers the comparisons need."""

    target = "native"

    def __init__(self, project: Path, tmp: Path, bins: dict[str, str]) -> None:
        self.project = project
        self.tmp = tmp
        self.bins = bins
        self.stack = Stack(
            project, tmp / "stack", bins, on_phase=lambda name, s: log(f"  {name}: {s:.2f} s")
        )
        self.settings_dir = tmp / "settings"
        self.settings_dir.mkdir()
        for name, text in LAYER_SETTINGS.items():
            if text:
                module = "bench_" + name.replace("-", "_")
                (self.settings_dir / f"{module}.py").write_text(text)
        self.stack.env["PYTHONPATH"] = str(self.settings_dir)
        self.extra: list[Server] = []
        self.layer = self.stack.env["CHANNEL_LAYER"]

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def http_port(self) -> int:
        return self.stack.http_port

    @property
    def app_servers(self) -> list[str]:
        return ["app"] if self.stack.process_manager == "supervisor" else ["wsgi", "asgi"]

    def cold_start(self) -> dict:
        """`Stack.start()` from nothing, timed, with each service's share (`Stack.phases`)."""
        start = time.perf_counter()
        self.stack.start()
        cold = time.perf_counter() - start
        return {
            "cold_start_seconds": cold,
            "cold_start_phases": dict(self.stack.phases),
            "process_manager": self.stack.process_manager,
        }

    def server_pids(self) -> list[int]:
        return sorted(self.stack.server_pids())

    def memory(self) -> dict:
        return procstats.memory_by_role(self.stack.server_pids())

    def daphne_spread(self) -> list[int]:
        """Client connections each Daphne process holds, most first."""
        held = established_sockets(self.stack.daphne_pids(), int(self.env["ASGI_PORT"]))
        return sorted((len(connections) for connections in held.values()), reverse=True)

    def run_in_process(self, page: str, seconds: float) -> dict:
        """inprocess.py in the project folder with the servers' environment (the venv's Python)."""
        result = subprocess.run(
            [self.bins["python"], str(BENCH / "inprocess.py"), page, str(seconds)],
            cwd=self.project,
            env=self.stack.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        self.stack.stop()

    def reconfigure(self, layer: str | None = None, **env: str) -> None:
        """Restart the Python servers with a channel layer and environment changes."""
        if layer is not None:
            self.layer = layer
            self.stack.env["CHANNEL_LAYER"] = layer.split("-")[0]
            if layer in LAYER_SETTINGS:
                self.stack.env["DJANGO_SETTINGS_MODULE"] = "bench_" + layer.replace("-", "_")
            else:
                self.stack.env.pop("DJANGO_SETTINGS_MODULE", None)
        for key, value in env.items():
            if value is None:
                self.stack.env.pop(key, None)
            else:
                self.stack.env[key] = value
        self.stack.restart(*self.app_servers)
        self.stack.wait_serving()

    def start_extra(self, name: str, argv: list[str], port: int, env: dict | None = None) -> Server:
        server = Server(
            name,
            argv,
            cwd=self.project,
            env=env or self.stack.env,
            log_path=self.stack.logs / f"{name}.log",
            ports=[port],
        )
        server.start()
        self.extra.append(server)
        return server

    def stop_extra(self, server: Server) -> None:
        server.stop()
        self.extra.remove(server)

    def stop_all(self) -> None:
        for server in list(self.extra):
            self.stop_extra(server)
        self.stack.stop()


def start_gunicorn_uvicorn(bench: NativeBench, name: str) -> tuple[Server, int]:
    """The same project served by gunicorn with 2 uvicorn workers (cookiecutter-django's
    production server), on a free port; returns once both workers serve the page."""
    (port,) = free_ports(1)
    argv = [
        bench.bins["gunicorn"],
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "config.asgi:application",
    ]
    server = bench.start_extra(name, argv, port)
    wait_until(lambda: http_status(port) == 200, timeout=30, what="gunicorn page")
    time.sleep(1)  # both workers booted
    return server, port


def http_status(port: int) -> int:
    """The status of `GET PAGE` on 127.0.0.1:`port` (0 when nothing answers)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        connection.request("GET", PAGE, headers={"Host": "localhost"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()
