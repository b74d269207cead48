"""HTTP: `GET /chat/lobby/` with wrk through nginx -> uWSGI, against the in-process limit; natively
also Daphne directly, gunicorn + uvicorn, nginx `return 200` and uWSGI/nginx variants."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable

from benchmarks import procstats
from benchmarks.common import CORES, PAGE, RESULTS, log
from benchmarks.containers import ContainerBench
from benchmarks.native import NativeBench, http_status, start_gunicorn_uvicorn
from harness.processes import free_ports, tree, wait_until


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
        server_cpu_cores=procstats.cpu_by_role(before, after, wall),
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


def in_process_limit(bench: NativeBench | ContainerBench, seconds: float) -> dict:
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


def http_section(bench: NativeBench | ContainerBench, seconds: float, variants: bool) -> dict:
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


def native_http_comparisons(bench: NativeBench, seconds: float, variants: bool) -> dict:
    """Servers started beside the native stack, and the stack restarted with other settings."""
    bins = bench.bins
    results: dict = {}
    log("HTTP: Daphne directly")
    (port,) = free_ports(1)
    argv = [bins["daphne"], "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    server = bench.start_extra("daphne-direct", argv, port)
    wait_until(lambda: http_status(port) == 200, timeout=30, what="daphne-direct page")
    results["daphne_direct"] = wrk(bins, port, seconds, lambda: tree(server.pid))
    bench.stop_extra(server)

    log("HTTP: gunicorn + 2 uvicorn workers")
    server, port = start_gunicorn_uvicorn(bench, "gunicorn-uvicorn")
    results["gunicorn_uvicorn"] = wrk(bins, port, seconds, lambda: tree(server.pid))
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
    results["nginx_return_200"] = wrk(bins, port, seconds, lambda: tree(server.pid))
    bench.stop_extra(server)

    if variants:
        results["uwsgi_variants"] = uwsgi_variants(bench, seconds)
    return results


def uwsgi_variants(bench: NativeBench, seconds: float) -> list[dict]:
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
    nginx_conf = stack.nginx_root / "nginx.conf"
    original = nginx_conf.read_text()
    nginx_conf.write_text(original.replace("worker_processes 1;", "worker_processes auto;"))
    stack.restart("nginx")
    result = wrk(bench.bins, stack.http_port, seconds, lambda: sorted(stack.server_pids()))
    rows.append({"variant": "nginx worker_processes auto (image default)", "env": {}, **result})
    nginx_conf.write_text(original)
    stack.restart("nginx")
    return rows
