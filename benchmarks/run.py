"""Benchmark the template: bake, start the stack, load it, print a Markdown table.

    .venv/bin/python benchmarks/run.py                        # full run, native
    .venv/bin/python benchmarks/run.py --quick                # smoke run, native
    .venv/bin/python benchmarks/run.py --target containers    # under the real `docker compose`

Everything listens on 127.0.0.1 only; every load is bounded in connections and seconds. The
native target runs the stack the full-stack tests run (harness/stack.py): the baked
compose.yaml's own commands as host processes (native.py). The containers target runs what users
run: `docker compose up` of the baked project (containers.py, on tests/containers' ComposeStack).
The sections are http_bench.py and ws_bench.py; report.py writes the table. Results go to
benchmarks/results/latest[-containers].json (git-ignored) and stdout. README.md in this folder
explains each number.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import procstats  # noqa: E402
from benchmarks.common import CORES, RESULTS, log  # noqa: E402
from benchmarks.containers import COLD_STARTS, ContainerBench, container_cold_start  # noqa: E402
from benchmarks.http_bench import http_section  # noqa: E402
from benchmarks.native import NativeBench  # noqa: E402
from benchmarks.report import markdown, targets  # noqa: E402
from benchmarks.ws_bench import WS_RUNS, offered, ws_section  # noqa: E402
from tests.containers.compose import set_env_values  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TARGETS = ["native", "containers"]


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
            sys.exit(f"{name} is not in {VENV_BIN}: scripts/bench.sh installs it (pyproject.toml)")
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
            bench = NativeBench(project, tmp, bins)
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
