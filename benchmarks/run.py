"""Benchmark the template: bake, start the stack natively, load it, print a Markdown table.

    .venv/bin/python benchmarks/run.py            # full run (~12 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # smoke run (< 2 min)

Everything listens on 127.0.0.1 only; every load is bounded in connections and seconds. The
stack is the one the full-stack tests run (tests/e2e/stack.py): the baked compose.yaml's own
commands, natively. Results go to benchmarks/results/latest.json (git-ignored) and stdout.
README.md in this folder explains each number.
"""

from __future__ import annotations

import argparse
import json
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


def binaries() -> dict[str, str]:
    """The programs the stack runs: system servers from PATH, Python servers from the venv."""
    found = {}
    for name in ["nginx", "redis-server", "envsubst", "wrk", "redis-cli"]:
        path = shutil.which(name)
        if path is None:
            sys.exit(f"{name} is not installed (.ci/run installs it)")
        found[name] = path
    for name in ["python", "uwsgi", "daphne", "supervisord", "gunicorn", "cookiecutter"]:
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
    """One baked project, its native stack, and the extra servers the comparisons need."""

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
    def app_servers(self) -> list[str]:
        return ["app"] if self.stack.process_manager == "supervisor" else ["wsgi", "asgi"]

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
    after = procstats.cpu_snapshot(server_pids())
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


def cpu_by_role(before: dict[int, float], after: dict[int, float], seconds: float) -> dict:
    """Cores per role between two snapshots (see procstats.cpu_cores for who counts)."""
    roles: dict[str, float] = {}
    for pid in set(before) | set(after):
        name = procstats.remembered_role(pid)
        used = after.get(pid, 0.0) - before.get(pid, 0.0)
        roles[name] = roles.get(name, 0.0) + used / seconds
    roles["total"] = sum(roles.values())
    return {key: round(value, 3) for key, value in roles.items()}


def in_process_limit(bench: Bench, seconds: float) -> dict:
    """The WSGI application called in a loop in one process, times the cores."""
    result = subprocess.run(
        [bench.bins["python"], str(BENCH / "inprocess.py"), PAGE, str(seconds)],
        cwd=bench.project,
        env=bench.stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    one = json.loads(result.stdout.strip().splitlines()[-1])
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


def http_section(bench: Bench, seconds: float, variants: bool) -> dict:
    bins, stack = bench.bins, bench.stack
    results: dict = {}
    log("HTTP: in-process limit")
    results["in_process_limit"] = in_process_limit(bench, seconds)

    log("HTTP: nginx -> uWSGI (the stack), after a 2 s warm-up")
    wrk(bins, stack.http_port, 2, lambda: sorted(stack.server_pids()))
    results["nginx_uwsgi"] = wrk(
        bins,
        stack.http_port,
        seconds,
        lambda: sorted(stack.server_pids()),
        memory_sample=lambda: procstats.memory_by_role(stack.server_pids()),
    )

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
    path_prefix: str = "/ws/chat/",
    memory_sample: Callable[[], dict] | None = None,
    first_rate: float = FIRST_RATE,
    spread: Callable[[], list[int]] | None = None,
) -> dict:
    """Offer more deliveries per second, step by step, until one is lost or p99 >= 100 ms."""
    log(f"WS: {label}, {rooms} room(s) x {clients} clients")
    generator = LoadGenerator(
        port=port, path_prefix=path_prefix, rooms=rooms, clients=clients, procs=procs
    )
    steps = []
    connections_per_process = spread() if spread is not None else None
    try:
        if generator.connected != rooms * clients:
            raise RuntimeError(f"connected {generator.connected} of {rooms * clients}")
        rate, step, retried = first_rate, 0, False
        while rate <= MAX_RATE:
            pids = server_pids()
            server_before = procstats.cpu_snapshot(pids)
            generator_before = procstats.cpu_snapshot(generator.pids)
            start = time.perf_counter()
            memory = None
            generator.start_step(step, rate / clients, seconds, drain=3.0)
            if memory_sample is not None:
                time.sleep(seconds / 2)
                memory = memory_sample()
            replies = generator.finish_step()
            wall = time.perf_counter() - start
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
                "server_cpu_cores": cpu_by_role(
                    server_before, procstats.cpu_snapshot(server_pids()), wall
                ),
                "load_generator_cpu_cores": round(
                    procstats.cpu_cores(
                        generator_before, procstats.cpu_snapshot(generator.pids), wall
                    ),
                    3,
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
            steps.append(result)
            log(
                f"  offered {rate:8.0f}/s: got {result['deliveries_per_s']:8.0f}/s, "
                f"lost {result['lost']}, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, server {result['server_cpu_cores']['total']:.2f} "
                f"cores, generator {result['load_generator_cpu_cores']:.2f} cores"
            )
            step += 1
            if not result["passed"]:
                if retried:
                    break
                # One bad 99th percentile in a few seconds can be a hiccup: try the rate again.
                retried = True
                result["retried"] = True
                continue
            rate *= STEP_FACTOR
            retried = False
    finally:
        generator.close()
    if connections_per_process:
        log(f"  connections per Daphne process: {connections_per_process}")
    passed = [step for step in steps if step["passed"]]
    best = max(passed, key=lambda step: step["deliveries_per_s"]) if passed else None
    return {
        "label": label,
        "rooms": rooms,
        "clients_per_room": clients,
        "best": best,
        "first_failure": next((step for step in reversed(steps) if not step["passed"]), None),
        "connections_per_process": connections_per_process,
        "steps": steps,
    }


def ws_section(bench: Bench, args: argparse.Namespace) -> dict:
    stack = bench.stack
    seconds, procs = args.ws_seconds, args.generator_processes
    shapes = [(1, 100)] if args.quick else [(1, 100), (1, 500), (50, 10)]
    results: dict = {"sweeps": []}

    def pids() -> list[int]:
        return sorted(stack.server_pids())

    def memory() -> dict:
        return procstats.memory_by_role(stack.server_pids())

    default_workers = stack.env["ASGI_WORKERS"]
    one = [(1, 100)]
    default_layer = stack.env["CHANNEL_LAYER"]
    if args.quick:
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
    asgi_port = int(stack.env["ASGI_PORT"])

    def spread() -> list[int]:
        held = established_sockets(stack.daphne_pids(), asgi_port)
        return sorted((len(inodes) for inodes in held.values()), reverse=True)

    for layer, workers, config_shapes in configs:
        bench.reconfigure(layer=layer, ASGI_WORKERS=workers)
        is_default = (layer, workers) == (default_layer, default_workers)
        for rooms, clients in config_shapes:
            sweep = broadcast_sweep(
                f"nginx -> {workers} Daphne -> Redis ({layer})",
                port=stack.http_port,
                rooms=rooms,
                clients=clients,
                server_pids=pids,
                seconds=seconds,
                procs=procs,
                memory_sample=memory if is_default else None,
                spread=spread,
            )
            sweep.update(layer=layer, asgi_workers=int(workers), server="daphne")
            results["sweeps"].append(sweep)
    bench.reconfigure(layer=default_layer, ASGI_WORKERS=default_workers)

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
    )
    sweep.update(layer=default_layer, asgi_workers=2, server="uvicorn")
    results["sweeps"].append(sweep)
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
            first_rate=FIRST_RATE * STEP_FACTOR**4,
        )
        sweep.update(layer=None, asgi_workers=1, server="ceiling")
        results["sweeps"].append(sweep)
    bench.stop_extra(server)

    if not args.quick:
        results["sharded"] = sharded(bench, args)
    return results


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
    quick = " --quick" if meta["quick"] else ""
    add(
        f"Measured natively on {meta['cpu']} (`benchmarks/run.py{quick}`, "
        f"{meta['date']}). Load generators share the machine; their CPU is shown beside "
        "the servers'."
    )
    add("")
    stack = results["stack"]
    add("| Stack | Value |")
    add("|---|---|")
    add(
        f"| Bake, defaults, with the checker (median of {len(stack['bake_seconds'])}) | "
        f"{statistics.median(stack['bake_seconds']):.2f} s |"
    )
    phases = ", ".join(
        f"{name} {seconds:.2f}" for name, seconds in stack.get("cold_start_phases", {}).items()
    )
    add(f"| Cold start to every service ready ({phases}) | {stack['cold_start_seconds']:.2f} s |")
    if "stop_seconds" in stack:
        add(f"| Stop | {stack['stop_seconds']:.2f} s |")
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
    add(f"HTTP `GET {PAGE}` (wrk, 2 threads, 64 connections, {meta['http_seconds']:.0f} s each):")
    add("")
    add("| Server | req/s | p50 ms | p99 ms | × in-process limit | server CPU | wrk CPU |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    add(
        f"| in-process limit (WSGI app in a loop × {CORES} cores) | {fmt(limit)} | - | - | 1.00 | "
        f"{CORES} | - |"
    )
    names = {
        "nginx_uwsgi": "nginx -> uWSGI (the stack)",
        "daphne_direct": "Daphne directly (1 process)",
        "gunicorn_uvicorn": "gunicorn + 2 uvicorn workers",
        "nginx_return_200": "nginx `return 200` (proxy ceiling)",
    }
    for key, name in names.items():
        row = http[key]
        add(http_row(name, row, limit))
    for row in http.get("uwsgi_variants", []):
        add(http_row(f"nginx -> uWSGI, {row['variant']}", row, limit))
    add("")

    add(
        f"WebSocket broadcast through nginx (highest offered rate with zero loss and p99 < "
        f"{P99_LIMIT_MS:.0f} ms; {meta['ws_seconds']:.0f} s steps, ×{STEP_FACTOR} apart; "
        f"{meta['generator_processes']} generator processes):"
    )
    add("")
    add(
        "| Server | rooms × clients | deliveries/s | p50 ms | p99 ms | × ceiling | server CPU "
        "| generator CPU | next step failed by |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---|")
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
    return "\n".join(lines)


def http_row(name: str, row: dict, limit: float) -> str:
    return (
        f"| {name} | {fmt(row['requests_per_s'])} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
        f"{row['requests_per_s'] / limit:.2f} | {row['server_cpu_cores']['total']:.2f} | "
        f"{row['load_generator_cpu_cores']:.2f} |"
    )


def ws_row(sweep: dict, ceilings: dict) -> str:
    best = sweep["best"]
    shape = (sweep["rooms"], sweep["clients_per_room"])
    ceiling = ceilings.get(shape)
    failure = sweep["first_failure"]
    if failure is None:
        why = f"none up to {MAX_RATE:,}/s"
    else:
        reasons = []
        if failure["lost"]:
            reasons.append(f"{failure['lost']:,} lost")
        if not failure["p99_ms"] < P99_LIMIT_MS:
            reasons.append(f"p99 {failure['p99_ms']:.0f} ms")
        if failure["send_errors"] or failure["closed_sockets"]:
            reasons.append("closed sockets")
        why = f"{failure['offered_deliveries_per_s']:,}/s: " + ", ".join(reasons)
    label = sweep["label"]
    shape_text = f"{shape[0]} × {shape[1]}"
    if best is None:
        return f"| {label} | {shape_text} | none passed | - | - | - | - | - | {why} |"
    ratio = best["deliveries_per_s"] / ceiling["deliveries_per_s"] if ceiling else None
    return (
        f"| {label} | {shape_text} | {fmt(best['deliveries_per_s'])} | {best['p50_ms']:.1f} | "
        f"{best['p99_ms']:.1f} | {fmt(ratio, 2)} | {best['server_cpu_cores']['total']:.2f} | "
        f"{best['load_generator_cpu_cores']:.2f} | {why} |"
    )


def targets(results: dict) -> list[str]:
    http = results["http"]
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

    def line(ok: bool, text: str) -> str:
        return f"- [{'met' if ok else 'MISSED'}] {text}"

    return [
        line(uwsgi >= 0.6 * limit, f"HTTP nginx->uWSGI {uwsgi / limit:.0%} of in-process (>= 60%)"),
        line(
            uwsgi > http["daphne_direct"]["requests_per_s"]
            and uwsgi > http["gunicorn_uvicorn"]["requests_per_s"],
            "HTTP nginx->uWSGI ahead of Daphne-direct and gunicorn+uvicorn",
        ),
        line(best >= 15000, f"WS 1x100 default stack {best:,.0f} deliveries/s (>= 15,000)"),
        line(best > uvicorn_best, f"WS stack ahead of uvicorn ({uvicorn_best:,.0f}/s)"),
        line(
            bool(tuned_best) and tuned_best["best"]["deliveries_per_s"] >= 15000,
            "WS 1x100 best measured configuration: "
            + (
                f"{tuned_best['label']} {tuned_best['best']['deliveries_per_s']:,.0f}/s"
                if tuned_best
                else "none passed"
            ),
        ),
        line(
            results["stack"]["cold_start_seconds"] < 2,
            f"cold start {results['stack']['cold_start_seconds']:.2f} s (< 2 s)",
        ),
        line(idle < 300, f"stack RSS idle {idle:.0f} MB (< 300 MB)"),
    ]


# --- Main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 2 minutes)")
    parser.add_argument("--generator-processes", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the tmp folder")
    args = parser.parse_args()
    args.http_seconds = 3.0 if args.quick else 5.0
    args.ws_seconds = 2.0 if args.quick else 3.0
    RESULTS.mkdir(exist_ok=True)
    bins = binaries()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    began = time.perf_counter()
    results: dict = {
        "meta": {
            "cpu": procstats.cpu_model(),
            "cores": CORES,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick,
            "http_seconds": args.http_seconds,
            "ws_seconds": args.ws_seconds,
            "generator_processes": args.generator_processes,
        }
    }
    bench = None
    try:
        bake_seconds = []
        for index in range(1 if args.quick else 3):
            log(f"bake {index + 1}")
            project, seconds = bake(bins, tmp / f"bake{index}")
            bake_seconds.append(seconds)
        bench = Bench(project, tmp, bins)
        results["meta"]["asgi_workers"] = bench.stack.env["ASGI_WORKERS"]
        results["meta"]["channel_layer"] = bench.stack.env["CHANNEL_LAYER"]
        log("cold start")
        start = time.perf_counter()
        with timed_services() as phases:
            bench.stack.start()
        cold = time.perf_counter() - start
        phases["wait until page, WebSocket and every Daphne serve"] = cold - sum(phases.values())
        time.sleep(1)
        results["stack"] = {
            "bake_seconds": bake_seconds,
            "cold_start_seconds": cold,
            "cold_start_phases": phases,
            "process_manager": bench.stack.process_manager,
            "memory_idle": procstats.memory_by_role(bench.stack.server_pids()),
        }
        results["http"] = http_section(bench, args.http_seconds, variants=not args.quick)
        results["ws"] = ws_section(bench, args)
        for sweep in results["ws"]["sweeps"]:
            loaded = [step for step in sweep["steps"] if "memory_under_load" in step]
            if loaded:
                results["ws_memory_under_load"] = loaded[-1]["memory_under_load"]
                break
        for server in list(bench.extra):
            bench.stop_extra(server)
        log("stop")
        start = time.perf_counter()
        bench.stack.stop()
        results["stack"]["stop_seconds"] = time.perf_counter() - start
    finally:
        if bench is not None:
            bench.stop_all()
        results["meta"]["total_seconds"] = time.perf_counter() - began
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=1))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    table = markdown(results)
    (RESULTS / "latest.md").write_text(table + "\n")
    print(table)
    print()
    print("\n".join(targets(results)))
    log(f"done in {results['meta']['total_seconds']:.0f} s; results/latest.json, results/latest.md")


if __name__ == "__main__":
    main()
