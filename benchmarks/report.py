"""The Markdown table of a run's results, and the project's goals met or missed."""

from __future__ import annotations

import statistics

from benchmarks.common import CORES, PAGE, fmt
from benchmarks.ws_bench import BISECT_WITHIN, MAX_RATE, P99_LIMIT_MS, STEP_FACTOR

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
            f"127.0.0.1 (harness/stack.py; the venv's Python, Debian's nginx, {workers} "
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
