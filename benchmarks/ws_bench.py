"""WebSocket broadcast through nginx: the highest offered rate with no loss and p99 under the
limit, searched with wsload.py processes; natively also uvicorn, the plain websockets ceiling,
other layers and Daphne counts, and channels-redis sharded over two Redis."""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from benchmarks import procstats
from benchmarks.common import BENCH, fmt, log
from benchmarks.containers import ContainerBench
from benchmarks.native import NativeBench, start_gunicorn_uvicorn
from harness.processes import free_ports, tree
from harness.stack import Stack

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
        "server_cpu_cores": procstats.cpu_by_role(server_before, server_after, wall),
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


def ws_section(bench: NativeBench | ContainerBench, args: argparse.Namespace) -> dict:
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


def native_ws_comparisons(bench: NativeBench, args: argparse.Namespace, shapes: list) -> list[dict]:
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
        server_pids=lambda: tree(server.pid) + redis_pids(stack),
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
            server_pids=lambda: tree(server.pid),
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
    """redis-server's processes."""
    return tree(stack.servers[stack.redis_service].pid)


def redis_commands(bench: NativeBench, port: int) -> int:
    output = subprocess.run(
        [bench.bins["redis-cli"], "-h", "127.0.0.1", "-p", str(port), "info", "stats"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(re.search(r"total_commands_processed:(\d+)", output).group(1))


def sharded(bench: NativeBench, args: argparse.Namespace) -> dict:
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
            server_pids=lambda: sorted(stack.server_pids()) + tree(server.pid),
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
