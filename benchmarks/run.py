"""Benchmark the template: bake, start the stack, load it, print a Markdown table.

    .venv/bin/python benchmarks/run.py                        # full run, native
    .venv/bin/python benchmarks/run.py --quick                # smoke run, native
    .venv/bin/python benchmarks/run.py --target containers    # under the real `docker compose`

Everything listens on 127.0.0.1 only; every load is bounded in connections and seconds. The
native target runs the stack the full-stack tests run (tests/e2e/stack.py): the baked
compose.yaml's own commands as host processes. The containers target runs what users run:
`docker compose up` of the baked project (benchmarks/containers.py, on tests/containers'
ComposeStack). Results go to benchmarks/results/latest[-containers].json (git-ignored) and
stdout. README.md in this folder explains each number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import procstats  # noqa: E402
from benchmarks.containers import ContainerBench  # noqa: E402
from tests.containers.compose import set_env_values  # noqa: E402
from tests.e2e.clients import http_get, ws_handshake_ok  # noqa: E402
from tests.e2e.stack import (  # noqa: E402
    Server,
    Stack,
    established_sockets,
    free_ports,
    wait_until,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
PAGE = "/chat/lobby/"
CORES = os.cpu_count() or 1
# A broadcast step passes when every delivery arrived and the 99th percentile is under this.
P99_LIMIT_MS = 100.0
# Offered deliveries per second: start here, multiply by STEP_FACTOR until a step fails.
FIRST_RATE = 2000
STEP_FACTOR = 1.5
MAX_RATE = 80000
# A run whose first rate fails steps down, but not below this share of the first rate (3 steps):
# lower than that the stack is not slow but broken, and the table says "none passed".
FLOOR = STEP_FACTOR**-3
# Then bisect between the last passing and the first failing rate until they are this close:
# a ×1.5 grid alone reports up to a third less than the stack sustains.
BISECT_WITHIN = 1.10
# Each broadcast figure is the median of this many searches; the table shows their min–max.
WS_RUNS = 3
# `docker compose up --wait` from nothing (images built) is timed this many times.
COLD_STARTS = 3
TARGETS = ["native", "containers"]
# What the containers target does not measure, and why (README.md, "Targets").
NATIVE_ONLY = [
    "Daphne directly, gunicorn + uvicorn and nginx `return 200` (servers started beside the "
    "stack, not part of what users run)",
    "uWSGI/nginx variants, channel layers and Daphne counts (the native run restarts servers "
    "with changed settings; the container run measures the defaults)",
    "the plain websockets ceiling and the sharded Redis run",
]

# The layer is chosen the way a deployment chooses it, with CHANNEL_LAYER (settings.py). Only
# the sharded run needs a settings module of its own: run.py writes it to a folder on the
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


def start_gunicorn_uvicorn(bench: Bench, name: str) -> tuple[Server, int]:
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


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Bake and stack ------------------------------------------------------------------------------


def binaries(target: str = "native") -> dict[str, str]:
    """The programs the run needs: system servers from PATH, Python servers from the venv. The
    containers target runs its servers in the images, so it needs only the load generators."""
    native = target == "native"
    found = {}
    system = ["nginx", "redis-server", "envsubst", "wrk", "redis-cli"] if native else ["wrk"]
    for name in system:
        path = shutil.which(name)
        if path is None:
            sys.exit(f"{name} is not installed (.ci/run installs it)")
        found[name] = path
    venv = ["python", "uwsgi", "daphne", "supervisord", "gunicorn"] if native else ["python"]
    for name in [*venv, "cookiecutter"]:
        path = shutil.which(name, path=str(VENV_BIN))
        if path is None:
            sys.exit(f"{name} is not in {VENV_BIN}: pip install --group test (pyproject.toml)")
        found[name] = path
    return found


def bake(bins: dict[str, str], out: Path, **answers: str) -> tuple[Path, float]:
    """Bake the template with --no-input (the post-gen checker included); return dir, seconds."""
    extra = [f"{key}={value}" for key, value in answers.items()]
    start = time.perf_counter()
    subprocess.run(
        [bins["cookiecutter"], "--no-input", "-o", str(out), str(ROOT), *extra],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    (project,) = [path for path in out.iterdir() if path.is_dir()]
    return project, seconds


class Bench:
    """One baked project, its native stack, and the extra servers the comparisons need.

    The sections use what ContainerBench offers too: `target`, `env`, `http_port`,
    `server_pids()`, `memory()`, `daphne_spread()`, `run_in_process()`, `stop()`, `stop_all()`.
    """

    target = "native"

    def __init__(self, project: Path, tmp: Path, bins: dict[str, str]) -> None:
        self.project = project
        self.tmp = tmp
        self.bins = bins
        self.stack = Stack(project, tmp / "stack", bins)
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
        """`Stack.start()` from nothing, timed, with each service's share."""
        start = time.perf_counter()
        with timed_services() as phases:
            self.stack.start()
        cold = time.perf_counter() - start
        phases["wait until page, WebSocket and every Daphne serve"] = cold - sum(phases.values())
        return {
            "cold_start_seconds": cold,
            "cold_start_phases": phases,
            "process_manager": self.stack.process_manager,
        }

    def server_pids(self) -> list[int]:
        return sorted(self.stack.server_pids())

    def memory(self) -> dict:
        return procstats.memory_by_role(self.stack.server_pids())

    def daphne_spread(self) -> list[int]:
        """Client connections each Daphne process holds, most first."""
        held = established_sockets(self.stack.daphne_pids(), int(self.env["ASGI_PORT"]))
        return sorted((len(inodes) for inodes in held.values()), reverse=True)

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
        for name in self.app_servers:
            self.stack.servers[name].stop()
        for name in self.app_servers:
            self.stack.servers[name].start()
        self.wait_serving()

    def wait_serving(self) -> None:
        stack = self.stack

        def serving() -> bool:
            try:
                return http_get(stack, PAGE)[0] == 200 and ws_handshake_ok(stack)
            except OSError:
                return False

        wait_until(serving, timeout=60, interval=0.2, what="page and WebSocket")
        if stack.process_manager == "supervisor":
            workers = int(stack.env["ASGI_WORKERS"])
            wait_until(lambda: len(stack.daphne_pids()) == workers, timeout=60, what="Daphnes")

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


def server_tree(server: Server) -> list[int]:
    from tests.e2e.stack import descendants

    return [server.pid, *descendants(server.pid)] if server.running() else []


@contextmanager
def timed_services() -> Iterator[dict[str, float]]:
    """Time each service of a Stack.start(): the one-shots and each server until it listens.

    Stack has no hook for this, so its two methods are wrapped for the duration.
    """
    phases: dict[str, float] = {}
    original_start, original_once = Server.start, Stack._run_once

    def start(server: Server, *args: object, **kwargs: object) -> None:
        began = time.perf_counter()
        original_start(server, *args, **kwargs)
        phases[f"{server.name} listening"] = time.perf_counter() - began

    def run_once(stack: Stack, name: str) -> None:
        began = time.perf_counter()
        original_once(stack, name)
        phases[f"{name} (one-shot)"] = time.perf_counter() - began

    Server.start, Stack._run_once = start, run_once
    try:
        yield phases
    finally:
        Server.start, Stack._run_once = original_start, original_once


# --- HTTP ----------------------------------------------------------------------------------------


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def wrk(
    bins: dict[str, str],
    port: int,
    seconds: float,
    server_pids: Callable[[], list[int]],
    *,
    connections: int = 64,
    memory_sample: Callable[[], dict] | None = None,
) -> dict:
    """wrk against 127.0.0.1:`port`; requests/s, p50/p99, its own CPU and the servers' CPU."""
    argv = [
        bins["wrk"],
        "-t2",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--latency",
        "-H",
        "Host: localhost",
        f"http://127.0.0.1:{port}{PAGE}",
    ]
    pids = server_pids()
    before = procstats.cpu_snapshot(pids)
    start = time.perf_counter()
    output = RESULTS / ".wrk.out"
    with output.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        memory = None
        if memory_sample is not None:
            time.sleep(seconds / 2)
            memory = memory_sample()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    after = procstats.cpu_snapshot(server_pids(), follow=before)
    text = output.read_text()
    output.unlink()
    if process.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed: {text}")
    try:
        result = wrk_numbers(text)
    except (AttributeError, ValueError) as error:
        raise RuntimeError(f"cannot read wrk's output ({error}):\n{text}") from None
    result.update(
        load_generator_cpu_cores=(usage.ru_utime + usage.ru_stime) / wall,
        server_cpu_cores=cpu_by_role(before, after, wall),
    )
    if memory is not None:
        result["memory_under_load"] = memory
    if result["non_2xx"]:
        raise RuntimeError(f"wrk saw {result['non_2xx']} non-2xx responses on {port}:\n{text}")
    return result


def wrk_numbers(text: str) -> dict:
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        # Anchored: "77.50%" in the thread stats would otherwise match "50%".
        "p50_ms": parse_duration_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
        "p99_ms": parse_duration_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
        "non_2xx": int(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text))
        else 0,
        "socket_errors": re.search(r"Socket errors: (.*)", text).group(1)
        if "Socket errors" in text
        else "",
    }


def cpu_by_role(before: dict, after: dict, seconds: float) -> dict:
    """Cores per role between two snapshots (procstats.cpu_used says who counts: a recycled
    worker's seconds count under its reaper, the uWSGI master)."""
    roles: dict[str, float] = {}
    for pid, used in procstats.cpu_used(before, after).items():
        name = procstats.remembered_role(pid)
        roles[name] = roles.get(name, 0.0) + used / seconds
    roles["total"] = sum(roles.values())
    return {key: round(value, 3) for key, value in roles.items()}


def in_process_limit(bench: Bench | ContainerBench, seconds: float) -> dict:
    """The WSGI application called in a loop in one process (in the target's Python), times the
    cores."""
    one = bench.run_in_process(PAGE, seconds)
    return {
        "requests_per_s": one["requests_per_s"] * CORES,
        "one_process_requests_per_s": one["requests_per_s"],
        "cpu_ms_per_request": one["cpu_ms_per_request"],
        "cores": CORES,
    }


NGINX_CEILING_CONF = """daemon off;
{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def http_section(bench: Bench | ContainerBench, seconds: float, variants: bool) -> dict:
    results: dict = {}
    python = "the image's" if bench.target == "containers" else "the venv's"
    log(f"HTTP: in-process limit ({python} Python)")
    results["in_process_limit"] = in_process_limit(bench, seconds)

    log("HTTP: nginx -> uWSGI (the stack), after a 2 s warm-up")
    wrk(bench.bins, bench.http_port, 2, bench.server_pids)
    results["nginx_uwsgi"] = wrk(
        bench.bins, bench.http_port, seconds, bench.server_pids, memory_sample=bench.memory
    )
    if bench.target == "native":
        results.update(native_http_comparisons(bench, seconds, variants))
    return results


def native_http_comparisons(bench: Bench, seconds: float, variants: bool) -> dict:
    """Servers started beside the native stack, and the stack restarted with other settings."""
    bins = bench.bins
    results: dict = {}
    log("HTTP: Daphne directly")
    (port,) = free_ports(1)
    argv = [bins["daphne"], "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    server = bench.start_extra("daphne-direct", argv, port)
    wait_until(lambda: http_status(port) == 200, timeout=30, what="daphne-direct page")
    results["daphne_direct"] = wrk(bins, port, seconds, lambda: server_tree(server))
    bench.stop_extra(server)

    log("HTTP: gunicorn + 2 uvicorn workers")
    server, port = start_gunicorn_uvicorn(bench, "gunicorn-uvicorn")
    results["gunicorn_uvicorn"] = wrk(bins, port, seconds, lambda: server_tree(server))
    bench.stop_extra(server)

    log("HTTP: nginx `return 200` (the proxy's ceiling)")
    (port,) = free_ports(1)
    root = bench.tmp / "nginx-ceiling"
    root.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CEILING_CONF.format(root=root, port=port, user=user))
    argv = [bins["nginx"], "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    server = bench.start_extra("nginx-ceiling", argv, port)
    results["nginx_return_200"] = wrk(bins, port, seconds, lambda: server_tree(server))
    bench.stop_extra(server)

    if variants:
        results["uwsgi_variants"] = uwsgi_variants(bench, seconds)
    return results


def http_status(port: int) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", PAGE, headers={"Host": "localhost"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def uwsgi_variants(bench: Bench, seconds: float) -> list[dict]:
    """nginx -> uWSGI with other process/thread counts, request logging off, 2 nginx workers."""
    stack = bench.stack
    default = (stack.env["WSGI_PROCESSES"], stack.env["WSGI_THREADS"])
    rows = []
    variants = [
        ("1 process x 1 thread", {"WSGI_PROCESSES": "1", "WSGI_THREADS": "1"}),
        ("2 processes x 1 thread", {"WSGI_PROCESSES": "2", "WSGI_THREADS": "1"}),
        ("4 processes x 1 thread", {"WSGI_PROCESSES": "4", "WSGI_THREADS": "1"}),
        ("4 processes x 4 threads", {"WSGI_PROCESSES": "4", "WSGI_THREADS": "4"}),
        (
            f"{default[0]} x {default[1]} (default), request log off",
            {"UWSGI_DISABLE_LOGGING": "true"},
        ),
    ]
    for label, env in variants:
        log(f"HTTP variant: {label}")
        bench.reconfigure(**env)
        result = wrk(bench.bins, stack.http_port, seconds, lambda: sorted(stack.server_pids()))
        rows.append({"variant": label, "env": env, **result})
        bench.reconfigure(
            **{key: None for key in env if key.startswith("UWSGI_")},
            WSGI_PROCESSES=default[0],
            WSGI_THREADS=default[1],
        )
    log("HTTP variant: nginx worker_processes auto")
    nginx_conf = stack.tmp / "nginx" / "nginx.conf"
    original = nginx_conf.read_text()
    nginx_conf.write_text(original.replace("worker_processes 1;", "worker_processes auto;"))
    stack.restart("nginx")
    result = wrk(bench.bins, stack.http_port, seconds, lambda: sorted(stack.server_pids()))
    rows.append({"variant": "nginx worker_processes auto (image default)", "env": {}, **result})
    nginx_conf.write_text(original)
    stack.restart("nginx")
    return rows


# --- WebSocket broadcast -------------------------------------------------------------------------


class LoadGenerator:
    """Several wsload.py processes holding `rooms` x `clients_per_room` WebSockets."""

    def __init__(
        self, *, port: int, path_prefix: str, rooms: int, clients: int, procs: int
    ) -> None:
        self.rooms = [f"bench{index}" for index in range(rooms)]
        self.clients_per_room = clients
        config = {
            "url": f"ws://localhost:{port}{path_prefix}{{room}}/",
            "connect_host": "127.0.0.1",
            "port": port,
            "origin": f"http://localhost:{port}",
            "rooms": self.rooms,
            "clients_per_room": clients,
            "workers": procs,
        }
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(BENCH / "wsload.py"), json.dumps({**config, "worker": index})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for index in range(procs)
        ]
        self.connected = sum(self._read(process)["ready"] for process in self.processes)

    def _read(self, process: subprocess.Popen) -> dict:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("a load generator process died (see its stderr above)")
        return json.loads(line)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def start_step(self, step: int, messages_per_s: float, seconds: float, drain: float) -> None:
        share = messages_per_s / len(self.processes)
        command = {"cmd": "step", "step": step, "rate": share, "duration": seconds, "drain": drain}
        for process in self.processes:
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()

    def finish_step(self) -> list[dict]:
        return [self._read(process) for process in self.processes]

    def close(self) -> None:
        for process in self.processes:
            try:
                process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                process.stdin.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def percentile(values: list[int], fraction: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, int(fraction * len(values)))
    return values[index] / 1000.0


def broadcast_sweep(
    label: str,
    *,
    port: int,
    rooms: int,
    clients: int,
    server_pids: Callable[[], list[int]],
    seconds: float,
    procs: int,
    runs: int = WS_RUNS,
    path_prefix: str = "/ws/chat/",
    memory_sample: Callable[[], dict] | None = None,
    first_rate: float = FIRST_RATE,
    spread: Callable[[], list[int]] | None = None,
) -> dict:
    """The highest rate with no loss and p99 < 100 ms, searched `runs` times; their median.

    Each run opens its own sockets, so a socket closed in one run cannot fail the next. The
    first run climbs from `first_rate`; the later ones start one ×STEP_FACTOR step below the
    first run's last passing step of the grid, which is still a passing rate for a steady
    stack, and skip the slow climb (a later run that fails there steps down).
    """
    log(f"WS: {label}, {rooms} room(s) x {clients} clients, {runs} run(s)")
    found = []
    start_rate = first_rate
    for index in range(runs):
        generator = LoadGenerator(
            port=port, path_prefix=path_prefix, rooms=rooms, clients=clients, procs=procs
        )
        try:
            if generator.connected != rooms * clients:
                raise RuntimeError(f"connected {generator.connected} of {rooms * clients}")
            connections = spread() if spread is not None else None

            def step(rate: float, number: int, generator: LoadGenerator = generator) -> dict:
                return broadcast_step(
                    generator,
                    number,
                    rate,
                    seconds=seconds,
                    server_pids=server_pids,
                    memory_sample=memory_sample,
                )

            run = search_rate(step, start_rate=start_rate, lowest=first_rate * FLOOR)
        finally:
            generator.close()
        run["connections_per_process"] = connections
        found.append(run)
        log(f"  run {index + 1}: {run_summary(run)}")
        if connections:
            log(f"  connections per Daphne process: {connections}")
        if index == 0 and run["grid_pass"] is not None:
            start_rate = max(first_rate, run["grid_pass"] / STEP_FACTOR)
    return {"label": label, "rooms": rooms, "clients_per_room": clients, **median_run(found)}


def broadcast_step(
    generator: LoadGenerator,
    number: int,
    rate: float,
    *,
    seconds: float,
    server_pids: Callable[[], list[int]],
    memory_sample: Callable[[], dict] | None,
) -> dict:
    """Offer `rate` deliveries per second for `seconds`; what arrived, how late, at what CPU."""
    clients = generator.clients_per_room
    pids = server_pids()
    server_before = procstats.cpu_snapshot(pids)
    generator_before = procstats.cpu_snapshot(generator.pids)
    start = time.perf_counter()
    memory = None
    generator.start_step(number, rate / clients, seconds, drain=3.0)
    if memory_sample is not None:
        time.sleep(seconds / 2)
        memory = memory_sample()
    replies = generator.finish_step()
    wall = time.perf_counter() - start
    server_after = procstats.cpu_snapshot(server_pids(), follow=server_before)
    generator_after = procstats.cpu_snapshot(generator.pids, follow=generator_before)
    sent: dict[str, int] = {}
    for reply in replies:
        for room, count in reply["sent"].items():
            sent[room] = sent.get(room, 0) + count
    expected = sum(sent.values()) * clients
    received = sum(reply["received"] for reply in replies)
    latencies = sorted(value for reply in replies for value in reply["latencies_us"])
    send_seconds = max(reply["send_seconds"] for reply in replies)
    result = {
        "offered_deliveries_per_s": round(rate),
        "messages_sent": sum(sent.values()),
        "deliveries_expected": expected,
        "deliveries_received": received,
        "lost": expected - received,
        "deliveries_per_s": received / send_seconds,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] / 1000 if latencies else float("nan"),
        "send_errors": sum(reply["send_errors"] for reply in replies),
        "closed_sockets": max(reply["closed"] for reply in replies),
        "server_cpu_cores": cpu_by_role(server_before, server_after, wall),
        "load_generator_cpu_cores": round(
            procstats.cpu_cores(generator_before, generator_after, wall), 3
        ),
    }
    if memory is not None:
        result["memory_under_load"] = memory
    result["passed"] = (
        result["lost"] == 0
        and result["p99_ms"] < P99_LIMIT_MS
        and not result["send_errors"]
        and not result["closed_sockets"]
    )
    log(
        f"  offered {rate:8.0f}/s: got {result['deliveries_per_s']:8.0f}/s, "
        f"lost {result['lost']}, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, server {result['server_cpu_cores']['total']:.2f} "
        f"cores, generator {result['load_generator_cpu_cores']:.2f} cores"
    )
    return result


def search_rate(
    step: Callable[[float, int], dict], *, start_rate: float, lowest: float = FIRST_RATE * FLOOR
) -> dict:
    """One run: the highest passing offered rate, to within BISECT_WITHIN.

    First a grid of ×STEP_FACTOR steps from `start_rate` (up while steps pass, down while they
    fail, never below `lowest` nor above MAX_RATE) until a passing and a failing rate bracket
    the limit; then the geometric middle of the bracket, again and again, until the failing
    rate is within BISECT_WITHIN of the passing one. A rate fails only when it fails twice: one
    bad 99th percentile in a few seconds can be a hiccup.
    """
    steps: list[dict] = []

    def attempt(rate: float) -> dict:
        for retry in (False, True):
            result = step(rate, len(steps))
            steps.append(result)
            if result["passed"]:
                break
            result["retried"] = not retry
        return result

    passed: dict | None = None
    failed: dict | None = None
    rate = start_rate
    while lowest * 0.999 <= rate <= MAX_RATE:
        result = attempt(rate)
        if result["passed"]:
            passed, rate = result, rate * STEP_FACTOR
        else:
            failed, rate = result, rate / STEP_FACTOR
        if passed and failed:
            break
    grid_pass = passed["offered_deliveries_per_s"] if passed else None
    bisections = 0
    while passed and failed and offered(failed) / offered(passed) > BISECT_WITHIN:
        result = attempt(math.sqrt(offered(passed) * offered(failed)))
        bisections += 1
        if result["passed"]:
            passed = result
        else:
            failed = result
    return {
        "start_rate": round(start_rate),
        "grid_pass": grid_pass,
        "bisections": bisections,
        "best": passed,
        "first_failure": failed,
        "steps": steps,
    }


def offered(step: dict) -> int:
    return step["offered_deliveries_per_s"]


def run_summary(run: dict) -> str:
    best, failure = run["best"], run["first_failure"]
    passing = f"highest passing {fmt(best['deliveries_per_s'])}/s" if best else "none passed"
    failing = f"lowest failing {fmt(offered(failure))}/s offered" if failure else "none failed"
    return f"{passing}, {failing} ({len(run['steps'])} steps, {run['bisections']} bisections)"


def median_run(runs: list[dict]) -> dict:
    """The run whose highest passing rate is the median (the lower middle for an even count):
    its best step gives the table's latencies and CPU; all runs' rates give the spread."""
    rates = [run["best"]["deliveries_per_s"] if run["best"] else 0.0 for run in runs]
    middle = statistics.median_low(rates)
    chosen = runs[rates.index(middle)]
    return {
        "best": chosen["best"],
        "first_failure": chosen["first_failure"],
        "deliveries_per_s": {"median": middle, "min": min(rates), "max": max(rates)},
        "connections_per_process": runs[0]["connections_per_process"],
        "runs": runs,
    }


def ws_section(bench: Bench | ContainerBench, args: argparse.Namespace) -> dict:
    seconds, procs, runs = args.ws_seconds, args.generator_processes, args.ws_runs
    shapes = [(1, 100)] if args.quick else [(1, 100), (1, 500), (50, 10)]
    results: dict = {"sweeps": []}
    default_workers = bench.env["ASGI_WORKERS"]
    default_layer = bench.env["CHANNEL_LAYER"]
    one = [(1, 100)]
    if args.quick or bench.target != "native":
        configs = [(default_layer, default_workers, shapes)]
    else:
        configs = [
            ("pubsub", "1", one),
            ("pubsub", default_workers, shapes),
            ("pubsub", "4", one),
            ("core", "1", one),
            ("core", default_workers, shapes),
            ("core", "4", one),
        ]
    for layer, workers, config_shapes in configs:
        is_default = (layer, workers) == (default_layer, default_workers)
        if bench.target == "native":
            bench.reconfigure(layer=layer, ASGI_WORKERS=workers)
        for rooms, clients in config_shapes:
            sweep = broadcast_sweep(
                f"nginx -> {workers} Daphne -> Redis ({layer})",
                port=bench.http_port,
                rooms=rooms,
                clients=clients,
                server_pids=bench.server_pids,
                seconds=seconds,
                procs=procs,
                runs=runs,
                memory_sample=bench.memory if is_default else None,
                spread=bench.daphne_spread,
            )
            sweep.update(layer=layer, asgi_workers=int(workers), server="daphne")
            results["sweeps"].append(sweep)
    if bench.target == "native":
        bench.reconfigure(layer=default_layer, ASGI_WORKERS=default_workers)
        results["sweeps"].extend(native_ws_comparisons(bench, args, shapes))
        if not args.quick:
            results["sharded"] = sharded(bench, args)
    return results


def native_ws_comparisons(bench: Bench, args: argparse.Namespace, shapes: list) -> list[dict]:
    """The same chat served by uvicorn, and the plain websockets ceiling, beside the stack."""
    stack, seconds, procs = bench.stack, args.ws_seconds, args.generator_processes
    default_layer = stack.env["CHANNEL_LAYER"]
    sweeps = []
    # The same chat served by uvicorn (gunicorn, 2 workers, the default layer), directly.
    server, port = start_gunicorn_uvicorn(bench, "gunicorn-uvicorn-ws")
    sweep = broadcast_sweep(
        f"gunicorn + 2 uvicorn workers -> Redis ({default_layer}), no nginx",
        port=port,
        rooms=1,
        clients=100,
        server_pids=lambda: server_tree(server) + redis_pids(stack),
        seconds=seconds,
        procs=procs,
        runs=args.ws_runs,
    )
    sweep.update(layer=default_layer, asgi_workers=2, server="uvicorn")
    sweeps.append(sweep)
    bench.stop_extra(server)

    # The ceiling: a plain `websockets` broadcast server, one process, no nginx.
    (port,) = free_ports(1)
    argv = [bench.bins["python"], str(BENCH / "ws_ceiling.py"), str(port)]
    server = bench.start_extra("ws-ceiling", argv, port)
    for rooms, clients in shapes:
        sweep = broadcast_sweep(
            "plain websockets server (ceiling)",
            port=port,
            rooms=rooms,
            clients=clients,
            server_pids=lambda: server_tree(server),
            seconds=seconds,
            procs=procs,
            runs=args.ws_runs,
            first_rate=FIRST_RATE * STEP_FACTOR**4,
        )
        sweep.update(layer=None, asgi_workers=1, server="ceiling")
        sweeps.append(sweep)
    bench.stop_extra(server)
    return sweeps


def redis_pids(stack: Stack) -> list[int]:
    server = stack.servers[stack.redis_service]
    return server_tree(server)


def redis_commands(bench: Bench, port: int) -> int:
    output = subprocess.run(
        [bench.bins["redis-cli"], "-h", "127.0.0.1", "-p", str(port), "info", "stats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(re.search(r"total_commands_processed:(\d+)", output).group(1))


def sharded(bench: Bench, args: argparse.Namespace) -> dict:
    """channels-redis with two Redis hosts: every message still delivered, load on both."""
    stack = bench.stack
    (port,) = free_ports(1)
    folder = bench.tmp / "redis2"
    folder.mkdir()
    argv = [
        bench.bins["redis-server"],
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(folder),
        "--save",
        "",
    ]
    server = bench.start_extra("redis-2", argv, port)
    bench.reconfigure(layer="pubsub-2-redis", BENCH_REDIS_URL_2=f"redis://127.0.0.1:{port}/0")
    first_commands = (redis_commands(bench, stack.redis_port), redis_commands(bench, port))
    sweeps = []
    for rooms, clients in [(1, 100), (50, 10)]:
        sweep = broadcast_sweep(
            f"nginx -> 2 Daphne -> 2 Redis ({bench.layer.split('-')[0]} layer, sharded)",
            port=stack.http_port,
            rooms=rooms,
            clients=clients,
            server_pids=lambda: sorted(stack.server_pids()) + server_tree(server),
            seconds=args.ws_seconds,
            procs=args.generator_processes,
            runs=args.ws_runs,
        )
        sweep.update(layer="pubsub-2-redis", asgi_workers=int(stack.env["ASGI_WORKERS"]))
        sweeps.append(sweep)
    last_commands = (redis_commands(bench, stack.redis_port), redis_commands(bench, port))
    bench.reconfigure(layer="pubsub", BENCH_REDIS_URL_2=None)
    bench.stop_extra(server)
    return {
        "sweeps": sweeps,
        "redis_commands": {
            "first": last_commands[0] - first_commands[0],
            "second": last_commands[1] - first_commands[1],
        },
    }


# --- Report --------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    lines: list[str] = []
    add = lines.append
    meta = results["meta"]
    stack = results["stack"]
    add(target_sentence(meta, nginx_workers(stack["memory_idle"])))
    add("")
    add("| Stack | Value |")
    add("|---|---|")
    add(
        f"| Bake, defaults, with the checker (median of {len(stack['bake_seconds'])}) | "
        f"{statistics.median(stack['bake_seconds']):.2f} s |"
    )
    for row in cold_start_rows(meta, stack):
        add(row)
    idle = stack["memory_idle"]
    http_load = results["http"]["nginx_uwsgi"].get("memory_under_load", {})
    ws_load = results.get("ws_memory_under_load", {})
    for name in [key for key in idle if key != "total"] + ["total"]:
        row = idle[name]
        add(
            f"| RSS {name} ({int(row['processes'])} proc.) idle / HTTP load / WS load | "
            f"{row['rss_mb']:.0f} / {http_load.get(name, {}).get('rss_mb', 0):.0f} / "
            f"{ws_load.get(name, {}).get('rss_mb', 0):.0f} MB |"
        )
    add(f"| PSS whole stack idle (shared pages counted once) | {idle['total']['pss_mb']:.0f} MB |")
    add("")

    http = results["http"]
    limit = http["in_process_limit"]["requests_per_s"]
    python = "the image's Python" if meta["target"] == "containers" else "the venv's Python"
    add(f"HTTP `GET {PAGE}` (wrk, 2 threads, 64 connections, {meta['http_seconds']:.0f} s each):")
    add("")
    add("| Server | req/s | p50 ms | p99 ms | × in-process limit | server CPU | wrk CPU |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    add(
        f"| in-process limit (WSGI app in a loop in {python} × {CORES} cores) | {fmt(limit)} "
        f"| - | - | 1.00 | {CORES} | - |"
    )
    names = {
        "nginx_uwsgi": "nginx -> uWSGI (the stack)",
        "daphne_direct": "Daphne directly (1 process)",
        "gunicorn_uvicorn": "gunicorn + 2 uvicorn workers",
        "nginx_return_200": "nginx `return 200` (proxy ceiling)",
    }
    for key, name in names.items():
        if key in http:
            add(http_row(name, http[key], limit))
    for row in http.get("uwsgi_variants", []):
        add(http_row(f"nginx -> uWSGI, {row['variant']}", row, limit))
    add("")

    add(
        f"WebSocket broadcast through nginx (highest offered rate with zero loss and p99 < "
        f"{P99_LIMIT_MS:.0f} ms: {meta['ws_seconds']:.0f} s steps ×{STEP_FACTOR} apart, then "
        f"bisected to within {BISECT_WITHIN - 1:.0%}; median of {meta['ws_runs']} runs, their "
        f"min–max beside it; latencies and CPU from the median run; "
        f"{meta['generator_processes']} generator processes):"
    )
    add("")
    add(
        "| Server | rooms × clients | deliveries/s | min–max | p50 ms | p99 ms | × ceiling "
        "| server CPU | generator CPU | lowest failing rate |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    ws = results["ws"]
    ceilings = {
        (sweep["rooms"], sweep["clients_per_room"]): sweep["best"]
        for sweep in ws["sweeps"]
        if sweep.get("server") == "ceiling"
    }
    for sweep in ws["sweeps"] + ws.get("sharded", {}).get("sweeps", []):
        add(ws_row(sweep, ceilings))
    if "sharded" in ws:
        commands = ws["sharded"]["redis_commands"]
        add("")
        add(
            f"Sharded over two Redis: commands served during the run: first "
            f"{commands['first']:,}, second {commands['second']:,}."
        )
    if meta["target"] != "native":
        add("")
        add("Not measured on this target (native only): " + "; ".join(NATIVE_ONLY) + ".")
    return "\n".join(lines)


def nginx_workers(memory: dict) -> int:
    """nginx's worker processes, counted (the master is one of nginx's processes)."""
    return int(memory.get("nginx", {}).get("processes", 1)) - 1


def target_sentence(meta: dict, workers: int) -> str:
    """The table's first line: which target was measured, on what, by which command."""
    quick = " --quick" if meta["quick"] else ""
    command = f"`benchmarks/run.py --target {meta['target']}{quick}`"
    where = f"on {meta['cpu']} ({command}, {meta['date']})"
    if meta["target"] == "containers":
        used = ", ".join(f"{image} ({source})" for image, source in meta["images"].items())
        what = (
            f"Target **containers**: `docker compose up` of the baked project (Docker "
            f"{meta['docker']}, Compose {meta['compose']}; images {used}; {workers} nginx "
            "workers; nginx published on 127.0.0.1 through Docker's network)"
        )
    else:
        what = (
            "Target **native**: the baked compose.yaml's commands as host processes on "
            f"127.0.0.1 (tests/e2e/stack.py; the venv's Python, Debian's nginx, {workers} "
            "nginx workers)"
        )
    changes = [f"{key}={value} (--env)" for key, value in meta.get("env_changes", {}).items()]
    changes += [
        f"{key}={value} (fitted to the engine by ComposeStack)"
        for key, value in meta.get("env_fitted", {}).items()
    ]
    changed = f"; the baked .env changed: {', '.join(changes)}" if changes else ""
    return (
        f"{what}, {where}{changed}. Load generators share the machine; their CPU is shown "
        "beside the servers'."
    )


def cold_start_rows(meta: dict, stack: dict) -> list[str]:
    phases = ", ".join(
        f"{name} {seconds:.2f}" for name, seconds in stack.get("cold_start_phases", {}).items()
    )
    if meta["target"] != "containers":
        rows = [
            f"| Cold start to every service ready ({phases}) | "
            f"{stack['cold_start_seconds']:.2f} s |"
        ]
        if "stop_seconds" in stack:
            rows.append(f"| Stop | {stack['stop_seconds']:.2f} s |")
        return rows
    runs = stack["cold_start_runs"]
    phases = ", ".join(
        f"{name} +{seconds:.1f}" for name, seconds in stack["cold_start_phases"].items()
    )
    rows = [
        f"| `compose build` of the project image (with the engine's layer cache as found) | "
        f"{meta['image_build_seconds']:.1f} s |",
        f"| Cold start: `docker compose up --detach --wait`, images built, no containers or "
        f"volumes (median of {len(runs)}, min–max; median run: {phases}) | "
        f"{statistics.median(runs):.1f} s ({min(runs):.1f}–{max(runs):.1f}) |",
    ]
    if "stop_seconds" in stack:
        rows.append(f"| Stop: `docker compose down --volumes` | {stack['stop_seconds']:.1f} s |")
    return rows


def http_row(name: str, row: dict, limit: float) -> str:
    return (
        f"| {name} | {fmt(row['requests_per_s'])} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
        f"{row['requests_per_s'] / limit:.2f} | {row['server_cpu_cores']['total']:.2f} | "
        f"{row['load_generator_cpu_cores']:.2f} |"
    )


def failure_text(failure: dict | None) -> str:
    """The lowest rate the median run saw fail twice, and why."""
    if failure is None:
        return f"none up to {MAX_RATE:,}/s"
    reasons = []
    if failure["lost"]:
        reasons.append(f"{failure['lost']:,} lost")
    if not failure["p99_ms"] < P99_LIMIT_MS:
        reasons.append(f"p99 {failure['p99_ms']:.0f} ms")
    if failure["send_errors"] or failure["closed_sockets"]:
        reasons.append("closed sockets")
    return f"{failure['offered_deliveries_per_s']:,}/s: " + ", ".join(reasons)


def ws_row(sweep: dict, ceilings: dict) -> str:
    best = sweep["best"]
    shape = (sweep["rooms"], sweep["clients_per_room"])
    ceiling = ceilings.get(shape)
    why = failure_text(sweep["first_failure"])
    rates = sweep["deliveries_per_s"]
    spread = f"{fmt(rates['min'])}–{fmt(rates['max'])}"
    label = sweep["label"]
    shape_text = f"{shape[0]} × {shape[1]}"
    if best is None:
        return f"| {label} | {shape_text} | none passed | {spread} | - | - | - | - | - | {why} |"
    ratio = best["deliveries_per_s"] / ceiling["deliveries_per_s"] if ceiling else None
    return (
        f"| {label} | {shape_text} | {fmt(best['deliveries_per_s'])} | {spread} | "
        f"{best['p50_ms']:.1f} | {best['p99_ms']:.1f} | {fmt(ratio, 2)} | "
        f"{best['server_cpu_cores']['total']:.2f} | {best['load_generator_cpu_cores']:.2f} | "
        f"{why} |"
    )


def targets(results: dict) -> list[str]:
    """The project's goals, met or missed; n/a where this target does not measure them."""
    http = results["http"]
    native = results["meta"]["target"] == "native"
    limit = http["in_process_limit"]["requests_per_s"]
    uwsgi = http["nginx_uwsgi"]["requests_per_s"]
    ws = [
        sweep
        for sweep in results["ws"]["sweeps"]
        if sweep.get("server") == "daphne"
        and (sweep["rooms"], sweep["clients_per_room"]) == (1, 100)
        and sweep["layer"] == results["meta"].get("channel_layer", "pubsub")
        and str(sweep["asgi_workers"]) == results["meta"]["asgi_workers"]
    ]
    uvicorn = [sweep for sweep in results["ws"]["sweeps"] if sweep.get("server") == "uvicorn"]
    tuned = [
        sweep
        for sweep in results["ws"]["sweeps"]
        if sweep.get("server") == "daphne"
        and (sweep["rooms"], sweep["clients_per_room"]) == (1, 100)
        and sweep["best"]
    ]
    tuned_best = max(tuned, key=lambda sweep: sweep["best"]["deliveries_per_s"], default=None)
    best = ws[0]["best"]["deliveries_per_s"] if ws and ws[0]["best"] else 0
    uvicorn_best = uvicorn[0]["best"]["deliveries_per_s"] if uvicorn and uvicorn[0]["best"] else 0
    idle = results["stack"]["memory_idle"]["total"]["rss_mb"]
    cold = results["stack"]["cold_start_seconds"]

    def line(ok: bool | None, text: str) -> str:
        verdict = "n/a, native only" if ok is None else "met" if ok else "MISSED"
        return f"- [{verdict}] {text}"

    return [
        line(uwsgi >= 0.6 * limit, f"HTTP nginx->uWSGI {uwsgi / limit:.0%} of in-process (>= 60%)"),
        line(
            uwsgi > http["daphne_direct"]["requests_per_s"]
            and uwsgi > http["gunicorn_uvicorn"]["requests_per_s"]
            if native
            else None,
            "HTTP nginx->uWSGI ahead of Daphne-direct and gunicorn+uvicorn",
        ),
        line(best >= 15000, f"WS 1x100 default stack {best:,.0f} deliveries/s (>= 15,000)"),
        line(
            best > uvicorn_best if native else None,
            "WS stack ahead of uvicorn" + (f" ({uvicorn_best:,.0f}/s)" if native else ""),
        ),
        line(
            bool(tuned_best) and tuned_best["best"]["deliveries_per_s"] >= 15000,
            "WS 1x100 best measured configuration: "
            + (
                f"{tuned_best['label']} {tuned_best['best']['deliveries_per_s']:,.0f}/s"
                if tuned_best
                else "none passed"
            ),
        ),
        # The containers' cold start waits for Docker's healthchecks (README.md, "Targets").
        line(cold < 2 if native else None, f"cold start {cold:.2f} s (< 2 s)"),
        line(idle < 300, f"stack RSS idle {idle:.0f} MB (< 300 MB)"),
    ]


# --- Main ----------------------------------------------------------------------------------------


def container_cold_start(bench: ContainerBench, count: int) -> dict:
    """`docker compose up --wait` from nothing but built images, `count` times; the last stays
    up for the load."""
    runs, downs = [], []
    for index in range(count):
        if index:
            downs.append(bench.down())
        log(f"cold start {index + 1} of {count}: docker compose up --detach --wait")
        runs.append(bench.up())
        log(f"  {runs[-1]['seconds']:.1f} s: {runs[-1]['timeline']}")
    seconds = [run["seconds"] for run in runs]
    middle = runs[seconds.index(statistics.median_low(seconds))]
    return {
        "cold_start_seconds": statistics.median(seconds),
        "cold_start_runs": seconds,
        "cold_start_phases": middle["timeline"],
        "down_seconds_between": downs,
        "process_manager": bench.stack.process_manager,
    }


def ws_memory_under_load(ws: dict) -> dict | None:
    """Memory mid-step at the highest rate the first sampled sweep offered (its first run)."""
    for sweep in ws["sweeps"]:
        loaded = [step for step in sweep["runs"][0]["steps"] if "memory_under_load" in step]
        if loaded:
            return max(loaded, key=offered)["memory_under_load"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="native",
        help="native: the compose commands as host processes; containers: `docker compose up`",
    )
    parser.add_argument("--generator-processes", type=int, default=2)
    parser.add_argument(
        "--ws-runs", type=int, default=WS_RUNS, help="searches per WebSocket figure (median)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a line of the baked .env before the stack starts, as a user would (the "
        "table's first line lists the changes)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the tmp folder")
    args = parser.parse_args()
    args.http_seconds = 3.0 if args.quick else 5.0
    args.ws_seconds = 2.0 if args.quick else 3.0
    RESULTS.mkdir(exist_ok=True)
    bins = binaries(args.target)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    began = time.perf_counter()
    results: dict = {
        "meta": {
            "target": args.target,
            "cpu": procstats.cpu_model(),
            "cores": CORES,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "http_seconds": args.http_seconds,
            "ws_seconds": args.ws_seconds,
            "ws_runs": args.ws_runs,
            "generator_processes": args.generator_processes,
            "env_changes": dict(item.split("=", 1) for item in args.env),
        }
    }
    name = "latest" if args.target == "native" else f"latest-{args.target}"
    bench = None
    try:
        bake_seconds = []
        for index in range(1 if args.quick else 3):
            log(f"bake {index + 1}")
            project, seconds = bake(bins, tmp / f"bake{index}")
            bake_seconds.append(seconds)
        if results["meta"]["env_changes"]:
            set_env_values(project / ".env", results["meta"]["env_changes"])
        if args.target == "native":
            bench = Bench(project, tmp, bins)
            log("cold start")
            stack = bench.cold_start()
        else:
            log("images, and `compose build` of the project's image")
            bench = ContainerBench(project, tmp, bins)
            results["meta"].update(bench.prepare())
            stack = container_cold_start(bench, COLD_STARTS)
        results["meta"]["asgi_workers"] = bench.env["ASGI_WORKERS"]
        results["meta"]["channel_layer"] = bench.env["CHANNEL_LAYER"]
        time.sleep(1)
        results["stack"] = {"bake_seconds": bake_seconds, **stack, "memory_idle": bench.memory()}
        results["http"] = http_section(bench, args.http_seconds, variants=not args.quick)
        results["ws"] = ws_section(bench, args)
        memory = ws_memory_under_load(results["ws"])
        if memory is not None:
            results["ws_memory_under_load"] = memory
        for server in list(getattr(bench, "extra", [])):
            bench.stop_extra(server)
        log("stop")
        start = time.perf_counter()
        bench.stop()
        results["stack"]["stop_seconds"] = time.perf_counter() - start
    finally:
        if bench is not None:
            bench.stop_all()
        results["meta"]["total_seconds"] = time.perf_counter() - began
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    table = markdown(results)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)
    print()
    print("\n".join(targets(results)))
    log(f"done in {results['meta']['total_seconds']:.0f} s; results/{name}.json, results/{name}.md")


if __name__ == "__main__":
    main()
