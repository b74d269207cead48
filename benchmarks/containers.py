"""The containers target: the baked project under the real `docker compose`, as users run it.

The image's Python and servers, the nginx image configured by the project's templates, Docker's
network and the port published on 127.0.0.1: tests/containers' ComposeStack runs it all. The
project's files are unchanged but for .env: a free port, the loopback address, and whatever
ComposeStack fits to the engine (the table lists that).

The servers run in containers, but in this machine's kernel: as root, their processes are
visible in the host's /proc, so CPU and memory are read as for the native stack, from the PID
`docker inspect` gives each container's main process and that process's descendants.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks import procstats
from benchmarks.common import BENCH, log
from harness.bake import read_env
from harness.processes import tree
from tests.containers import images
from tests.containers.compose import ComposeStack, compose_cli, engine_reachable, seconds_between

# The .env lines ComposeStack always changes (README.md, "Targets"); any other change it makes
# is listed on the table's first line.
EXPECTED_ENV_CHANGES = {"HTTP_PORT", "PUBLISH_ADDRESS"}


class ContainerBench:
    """One baked project brought up by `docker compose`; the same interface as NativeBench."""

    target = "containers"

    def __init__(self, project: Path, tmp: Path, bins: dict[str, str]) -> None:
        if not engine_reachable():
            sys.exit("no Docker engine answers (`docker info`); the containers target needs one")
        cli = compose_cli()
        if cli is None:
            sys.exit("Docker Compose v2 is not installed (`docker compose` or `docker-compose`)")
        self.project = project
        self.tmp = tmp
        self.bins = bins
        # Before ComposeStack: it runs the nginx image to ask what the engine grants.
        self.images = {image: images.ensure(image) for image in images.named_images(project)}
        baked = read_env(project)
        self.stack = ComposeStack(project, f"bench-{os.getpid()}", cli, scale=[])
        if self.stack.process_manager == "compose":
            self.stack.scale = ["--scale", f"asgi={self.stack.env['ASGI_WORKERS']}"]
        self.env = self.stack.env
        # What ComposeStack fitted to this engine (MAX_OPEN_FILES where the engine grants less).
        self.env_fitted = {
            key: value
            for key, value in self.env.items()
            if baked.get(key) != value and key not in EXPECTED_ENV_CHANGES
        }
        self._main_pids: list[int] = []

    @property
    def http_port(self) -> int:
        return self.stack.http_port

    # Images and the stack's life --------------------------------------------------------------

    def prepare(self) -> dict:
        """Build the project's image, so every `up` after this one starts from built images;
        what ran: the registry images' sources, the engine, the .env lines fitted to it."""
        build_seconds = self.stack.build()
        return {
            "images": self.images,
            "env_fitted": self.env_fitted,
            "image_build_seconds": build_seconds,
            "docker": docker_text("version", "--format", "{{.Server.Version}}"),
            "compose": self.stack.compose("version", "--short").stdout.strip(),
        }

    def up(self) -> dict:
        """`up --detach --wait` from no containers and no volumes; seconds, and when each service
        started, exited (the one-shot setup) and first passed its healthcheck."""
        began = datetime.now(UTC)
        start = time.perf_counter()
        self.stack.up(build=False)
        seconds = time.perf_counter() - start
        self._main_pids = sorted(self.stack.container_pids().values())
        return {"seconds": seconds, "timeline": self.timeline(began.isoformat())}

    def timeline(self, began: str) -> dict[str, float]:
        """{"<service> <event>": seconds after `began`}, in order."""
        events = {}
        for container in self.stack.containers():
            service = container["Config"]["Labels"]["com.docker.compose.service"]
            state = container["State"]
            events[f"{service} started"] = seconds_between(began, state["StartedAt"])
            if not state["Running"] and state["ExitCode"] == 0:
                events[f"{service} exited"] = seconds_between(began, state["FinishedAt"])
            passed = [
                probe for probe in state.get("Health", {}).get("Log", []) if probe["ExitCode"] == 0
            ]
            if passed:
                events[f"{service} healthy"] = seconds_between(began, passed[0]["End"])
        return dict(sorted(events.items(), key=lambda item: item[1]))

    def down(self) -> float:
        """`down --volumes` (the image stays, for the next cold start); seconds."""
        start = time.perf_counter()
        self.stack.down(keep_image=True)
        self._main_pids = []
        return time.perf_counter() - start

    def stop(self) -> None:
        self.down()

    def stop_all(self) -> None:
        """Remove everything the run made: containers, network, volumes, the project's image."""
        self.stack.down()

    # Looking inside ---------------------------------------------------------------------------

    def server_pids(self) -> list[int]:
        """Host PIDs of every process in the stack's containers, and of Docker's userland proxy
        for the published port (it carries every request on 127.0.0.1, so it is the stack's)."""
        pids = set(port_proxies(self.http_port))
        for pid in self._main_pids:
            pids.update(tree(pid))
        return sorted(pids)

    def memory(self) -> dict:
        return procstats.memory_by_role(self.server_pids())

    def daphne_spread(self) -> list[int]:
        """Client connections each Daphne process holds, most first."""
        return sorted(self.stack.daphne_connections().values(), reverse=True)

    def run_in_process(self, page: str, seconds: float) -> dict:
        """inprocess.py in the running app container: the image's Python, settings and data."""
        source = (BENCH / "inprocess.py").read_text()
        result = self.stack.exec(
            self.stack.wsgi_service, "python", "-", page, str(seconds), stdin=source
        )
        return json.loads(result.stdout.strip().splitlines()[-1])


def port_proxies(port: int) -> list[int]:
    """PIDs of the docker-proxy processes publishing `port` (none when the engine runs without
    its userland proxy)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        words = process.info["cmdline"] or []
        if words and words[0].endswith("docker-proxy") and str(port) in words:
            found.append(process.pid)
    return found


def docker_text(*args: str) -> str:
    """The docker CLI's output, stripped ("" when it fails)."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return result.stdout.strip()


# `docker compose up --wait` from nothing (images built) is timed this many times.
COLD_STARTS = 3


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
