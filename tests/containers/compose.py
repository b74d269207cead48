"""Drive a baked project with the real `docker compose`, the way its users run it.

The project's files are used unchanged; the only edits are to its `.env`, as a user would make
them: nginx's port is a free one, published on 127.0.0.1 only (PUBLISH_ADDRESS), so the test
stack faces nobody but this machine. Each stack gets its own compose project name, so its
containers, network, volumes and image are its own and `down` removes them all.

A `ComposeStack` has the attributes the full-stack clients use (`http_port`, `domain`,
`origin`), so harness.clients and tests/e2e/clients.py drive it exactly as they drive the
native stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
from datetime import datetime
from pathlib import Path

import yaml

from harness.bake import load_compose, read_env
from harness.processes import LOOPBACK, free_ports

COMMAND_TIMEOUT = 900.0
# `up --wait` on a built image must be healthy within this, or `up` fails (--wait-timeout);
# measured here: about 18 s.
UP_TIMEOUT = 120
# Compose 2.26 starts log lines with a clear-line escape even with --no-color and no terminal.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Run inside a container with `python -`: which Daphne process holds how many client connections.
# {pid: count of ESTABLISHED TCP sockets whose local port is ASGI_PORT}, as JSON on stdout.
DAPHNE_CONNECTIONS = r"""
import json, os, sys
port = int(sys.argv[1])
wanted = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            wanted.add(fields[9])
held = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    if not any(part.endswith(b"daphne") for part in argv[:2]):
        continue
    count = 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in wanted:
            count += 1
    held[pid] = count
print(json.dumps(held))
"""


def seconds_between(started: str, finished: str) -> float:
    """Seconds between two of Docker's RFC 3339 timestamps (nanoseconds cut to microseconds)."""

    def parse(stamp: str) -> datetime:
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
        return datetime.fromisoformat(stamp)

    return (parse(finished) - parse(started)).total_seconds()


def load_yaml(path: Path) -> dict:
    """A YAML file of the project (the generated CI workflow)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class ComposeError(RuntimeError):
    """A compose command failed; the message holds its output."""


def compose_cli() -> list[str] | None:
    """How to call Compose v2 here: the `docker compose` plugin, else a standalone v2 binary."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        result = subprocess.run(  # noqa: S603 - fixed argv
            [*argv, "version", "--short"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2"):
            return argv
    return None


def engine_reachable() -> bool:
    """True when a Docker engine answers the docker CLI."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def set_env_values(path: Path, values: dict[str, str]) -> None:
    """Change KEY=VALUE lines of a dotenv file in place (each key must already be there)."""
    text = path.read_text(encoding="utf-8")
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{re.escape(key)}=.*$", f"{key}={value}", text)
        if count != 1:
            raise ComposeError(f"{path}: expected one {key}= line, found {count}")
    path.write_text(text, encoding="utf-8")


class ComposeStack:
    """A baked project run by `docker compose -p <name>` from its own folder."""

    def __init__(
        self,
        project: Path,
        name: str,
        cli: list[str],
        scale: list[str],
        *,
        override: Path | None = None,
    ) -> None:
        self.project = project
        self.name = name
        self.cli = cli
        self.scale = scale  # `--scale SERVICE=N` options that every `up` repeats
        # A test's own compose file merged over compose.yaml (`-f compose.yaml -f override`), for
        # what only the test adds beside the project: a test CA's service, say.
        self.files = ["compose.yaml", *([str(override)] if override else [])]
        self.http_port, self.https_port = free_ports(2)
        ports = {"HTTP_PORT": str(self.http_port), "PUBLISH_ADDRESS": LOOPBACK}
        if "HTTPS_PORT" in read_env(project):
            ports["HTTPS_PORT"] = str(self.https_port)
        else:
            self.https_port = None
        set_env_values(project / ".env", ports)
        self.fit_open_files_to_the_engine()
        self.env = read_env(project)
        self.domain = self.env["NGINX_SERVER_NAME"]
        # A TLS bake: clients trust nginx's certificate through this (the test that made or got
        # the certificate sets it), as for the native Stack.
        self.tls_context: ssl.SSLContext | None = None
        self.phases: dict[str, float] = {}  # seconds per phase, for the report

    def fit_open_files_to_the_engine(self) -> None:
        """Lower MAX_OPEN_FILES (and nginx's connections with it) to what this Docker engine may
        grant a container, as an operator on such a host would: a container asking for more
        fails to start ("error setting rlimits"). Hosts usually grant far more than .env asks;
        some sandboxes, such as our CI machines, grant only their own limit."""
        dotenv = read_env(self.project)
        nginx_image = load_compose(self.project, dotenv)["services"]["nginx"]["image"]
        result = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "sh", nginx_image, "-c", "ulimit -Hn"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
        granted = result.stdout.strip()
        self.engine_open_files = int(granted) if granted.isdigit() else None
        if self.engine_open_files and int(dotenv["MAX_OPEN_FILES"]) > self.engine_open_files:
            limit = str(self.engine_open_files)
            connections = min(int(dotenv["NGINX_WORKER_CONNECTIONS"]), self.engine_open_files // 2)
            set_env_values(
                self.project / ".env",
                {"MAX_OPEN_FILES": limit, "NGINX_WORKER_CONNECTIONS": str(connections)},
            )

    @property
    def origin(self) -> str:
        """The Origin a browser on this site sends."""
        if self.https_port is not None:
            return f"https://{self.domain}:{self.https_port}"
        return f"http://{self.domain}:{self.http_port}"

    @property
    def process_manager(self) -> str:
        return "supervisor" if "app" in self.services() else "compose"

    @property
    def wsgi_service(self) -> str:
        return "app" if self.process_manager == "supervisor" else "wsgi"

    @property
    def asgi_service(self) -> str:
        return "app" if self.process_manager == "supervisor" else "asgi"

    @property
    def image(self) -> str:
        """The project's own image (compose.yaml names it after the compose project)."""
        return f"{self.name}-app"

    # Running compose ---------------------------------------------------------------------------

    def compose(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True, stdin: str = ""
    ) -> subprocess.CompletedProcess:
        """Run `docker compose -p NAME ARGS` in the project folder; raise on failure."""
        argv = [*self.cli, "-p", self.name, *self.file_options(), *args]
        result = subprocess.run(  # noqa: S603 - argv built here
            argv,
            cwd=self.project,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ComposeError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout[-4000:]}"
                f"\n{result.stderr[-4000:]}"
            )
        return result

    def file_options(self) -> list[str]:
        """`-f` for each compose file (none when compose.yaml is the only one, as for users)."""
        if len(self.files) == 1:
            return []
        return [option for path in self.files for option in ("-f", path)]

    def run_workflow_step(self, name: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the generated CI's compose-job step whose name contains `name`, verbatim, in the
        project folder, as GitHub's runner would (bash -eo pipefail). Its `docker compose`
        commands reach this stack: the environment names the project and its files, and a
        `docker compose` plugin where only a standalone Compose v2 is installed."""
        workflow = load_yaml(self.project / ".github/workflows/ci.yml")
        (step,) = [s for s in workflow["jobs"]["compose"]["steps"] if name in s.get("name", "")]
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.name,
            "COMPOSE_FILE": os.pathsep.join(self.files),
        }
        if self.cli[0] != "docker":
            plugins = self.project.parent / "docker-config" / "cli-plugins"
            plugins.mkdir(parents=True, exist_ok=True)
            plugin = plugins / "docker-compose"
            if not plugin.exists():
                plugin.symlink_to(shutil.which(self.cli[0]))
            env["DOCKER_CONFIG"] = str(plugins.parent)
        return subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]],  # noqa: S607 - the workflow's step
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def services(self) -> dict[str, dict]:
        """compose.yaml's services as compose itself resolves them (`config --format json`)."""
        if not hasattr(self, "_services"):
            config = json.loads(self.compose("config", "--format", "json").stdout)
            self._services = config["services"]
        return self._services

    def build(self) -> float:
        """`build` the project's image; return the seconds it took."""
        started = time.monotonic()
        self.compose("build")
        return round(time.monotonic() - started, 1)

    def up(self, wait_timeout: int = UP_TIMEOUT, *, build: bool = True) -> float:
        """`up --build --detach --wait` (with the stack's scale); return the seconds it took.

        `build=False` leaves out `--build`: the benchmark times `up` on images already built.
        """
        started = time.monotonic()
        self.compose(
            "up",
            *(["--build"] if build else []),
            "--detach",
            "--wait",
            "--wait-timeout",
            str(wait_timeout),
            *self.scale,
            timeout=wait_timeout + COMMAND_TIMEOUT,
        )
        return round(time.monotonic() - started, 1)

    def down(self, *, keep_image: bool = False) -> None:
        """Remove containers, network, volumes and (unless `keep_image`) the project's image."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        if keep_image:
            return
        subprocess.run(
            ["docker", "image", "rm", "--force", self.image],  # noqa: S607
            capture_output=True,
            check=False,
        )

    def inspect_image(self, template: str) -> str:
        """`docker image inspect --format TEMPLATE` of the project's image."""
        result = subprocess.run(
            ["docker", "image", "inspect", "--format", template, self.image],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def containers(self, *, all_states: bool = True) -> list[dict]:
        """`docker inspect` of every container of the project (stopped ones too)."""
        args = ["ps", "--quiet"] + (["--all"] if all_states else [])
        ids = self.compose(*args).stdout.split()
        if not ids:
            return []
        result = subprocess.run(
            ["docker", "inspect", *ids],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout)

    def containers_of(self, service: str) -> list[dict]:
        """The inspected containers of one service, by replica number."""
        found = [
            container
            for container in self.containers()
            if container["Config"]["Labels"].get("com.docker.compose.service") == service
        ]
        return sorted(
            found, key=lambda c: int(c["Config"]["Labels"]["com.docker.compose.container-number"])
        )

    def container_pids(self) -> dict[str, int]:
        """{container name: host PID of its main process} of the running containers (State.Pid;
        as root, the host's /proc shows those processes and their children)."""
        return {
            container["Name"].lstrip("/"): container["State"]["Pid"]
            for container in self.containers(all_states=False)
            if container["State"]["Running"]
        }

    def exec(
        self,
        service: str,
        *argv: str,
        index: int = 1,
        user: str | None = None,
        stdin: str = "",
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run `argv` in a running container of `service` (no TTY)."""
        options = ["-T", "--index", str(index)] + (["--user", user] if user else [])
        return self.compose("exec", *options, service, *argv, stdin=stdin, timeout=120, check=check)

    def logs(self, service: str) -> str:
        """Everything the service's containers wrote, without compose's line prefixes."""
        return ANSI_ESCAPE.sub(
            "", self.compose("logs", "--no-color", "--no-log-prefix", service).stdout
        )

    def logs_by_container(self, service: str) -> dict[str, list[str]]:
        """The service's log lines, keyed by container name (compose's `name  | ` prefix)."""
        lines: dict[str, list[str]] = {}
        output = ANSI_ESCAPE.sub("", self.compose("logs", "--no-color", service).stdout)
        for line in output.splitlines():
            name, separator, text = line.partition("|")
            if separator:
                lines.setdefault(name.strip(), []).append(text.removeprefix(" "))
        return lines

    def redis_subscriptions(self) -> int:
        """How many pub/sub channels Redis has subscribers for (as the native Stack's)."""
        output = self.exec("redis", "redis-cli", "PUBSUB", "CHANNELS", "*").stdout
        return len(output.split())

    def daphne_clients(self) -> dict[tuple[int, int], int]:
        """Like daphne_connections, but only connections that last: the smaller count of two
        samples 0.3 s apart. Health probes (nginx's /ws/healthz, healthcheck.py) open and close a
        connection every few seconds; a client's stays."""
        first = self.daphne_connections()
        time.sleep(0.3)
        second = self.daphne_connections()
        return {key: min(count, first.get(key, 0)) for key, count in second.items()}

    def daphne_connections(self) -> dict[tuple[int, int], int]:
        """{(replica, pid): client connections it holds} for every Daphne of the stack."""
        held = {}
        for container in self.containers_of(self.asgi_service):
            if not container["State"]["Running"]:
                continue
            index = int(container["Config"]["Labels"]["com.docker.compose.container-number"])
            result = self.exec(
                self.asgi_service,
                "python",
                "-",
                self.env["ASGI_PORT"],
                index=index,
                stdin=DAPHNE_CONNECTIONS,
            )
            for pid, count in json.loads(result.stdout).items():
                held[(index, int(pid))] = count
        return held

    @property
    def network(self) -> str:
        """The project's default network (compose names it after the project)."""
        return f"{self.name}_default"

    def run_beside(self, *argv: str) -> str:
        """Start a container of the project's image on its network (not a compose service);
        return its id. It only exists to occupy something, such as an address."""
        result = subprocess.run(
            [  # noqa: S607
                "docker",
                "run",
                "--detach",
                "--network",
                self.network,
                # The project's label, so that `down` removes it even if its test never did.
                "--label",
                f"com.docker.compose.project={self.name}",
                self.image,
                *argv,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def container_addresses(self, container: str) -> list[str]:
        """The addresses a container holds on its networks."""
        result = subprocess.run(
            [  # noqa: S607
                "docker",
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                container,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.split()

    def remove_container(self, container: str) -> None:
        """Remove a container started by `run_beside`."""
        subprocess.run(
            ["docker", "rm", "--force", container],  # noqa: S607
            capture_output=True,
            check=False,
        )

    def gateway(self) -> str:
        """The address nginx sees a host client come from: the project network's gateway."""
        result = subprocess.run(
            [  # noqa: S607
                "docker",
                "network",
                "inspect",
                self.network,
                "--format",
                "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def log_tails(self) -> str:
        """The tail of every service's log, for a failure report."""
        return ANSI_ESCAPE.sub(
            "", self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
        )
