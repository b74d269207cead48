"""The baked project's compose services, run natively on 127.0.0.1: `Server` and `Stack`.

tests/containers/ runs the project under the real `docker compose`; this module runs what
compose.yaml describes natively, where a fault can be injected into one process, a browser drives
the page and a benchmark reads every server's CPU. It uses the very same files: each service's
`command:` from compose.yaml (interpolated by the project's checker, harness.bake),
deploy/supervisor/supervisord.conf or deploy/uwsgi.ini through those commands, and the nginx
template rendered with envsubst the way the official nginx image renders it. What differs from
compose is only where things live: every host is 127.0.0.1, every port a free one, every container
path a folder under the test's tmp directory (DESIGN.md, "One config, two runtimes").
"""

from __future__ import annotations

import os
import re
import resource
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO

from harness import bake
from harness.processes import (
    LOOPBACK,
    cmdline,
    descendants,
    established_sockets,
    free_ports,
    is_alive,
    parent,
    port_accepts,
    session_members,
    wait_until,
)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40
# What the official nginx image does at start: render /etc/nginx/templates/*.template into conf.d.
NGINX_MIME_TYPES = "/etc/nginx/mime.types"
IMAGE_UWSGI_PARAMS = "/etc/nginx/uwsgi_params"
OFFICIAL_UWSGI_PARAMS = Path(__file__).parent / "nginx" / "uwsgi_params"
# The nginx image runs the executable *.sh here before nginx (compose.yaml mounts ours there).
ENTRYPOINT_DIR = PurePosixPath("/docker-entrypoint.d")
# envsubst's form in the nginx templates (the image substitutes `${NAME}` only).
TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Settings the Dockerfile's ENV gives every Python process of the image.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
# A log line that reports a failure, whichever server wrote it.
ERROR_LINE = re.compile(
    r"Traceback|\b(ERROR|CRITICAL)\b|\[(error|crit|alert|emerg)\]|exited: .*not expected"
)
# When Daphne closes a WebSocket itself, autobahn ends the closing handshake by aborting the TCP
# connection (RST, autobahn/websocket/protocol.py "When we are a server, we immediately drop the
# TCP"), and nginx logs that at [error] level. Expected wherever the server closes a socket.
NGINX_UPSTREAM_RESET = re.compile(
    r"\[error\].*recv\(\) failed \(104: Connection reset by peer\) while proxying upgraded"
)


class StackError(RuntimeError):
    """A server did not start, did not stop, or a service cannot be run natively."""


class Server:
    """One long-running server: started in its own session, logged to a file, stopped by group."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        ports: list[int],
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.ports = ports
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The PID of the started process (session and process-group leader)."""
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until each of its ports accepts connections."""
        # Append mode: supervisord reopens /dev/stdout (this file) for its programs' output, and
        # two writers without O_APPEND would overwrite each other.
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - argv comes from the baked compose.yaml
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while not port_accepts(port):
                if self.process.poll() is not None:
                    raise StackError(
                        f"{self.name} exited with {self.process.returncode} before listening on "
                        f"{port}: {self.argv}\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{self.name} did not listen on {port} within {timeout:.0f} s: "
                        f"{self.argv}\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """TERM the server's process group, wait, then KILL; then anything left in its session.

        supervisord puts each program in its own process group, still inside our session: those
        are found by session id (never by name) and stopped the same way.
        """
        if self.process is None:
            return
        session = self.process.pid
        if self.process.poll() is None:
            _signal_group(session, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(session, signal.SIGKILL)
                self.process.wait(timeout)
        leftovers = session_members(session)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in leftovers:
                _signal_pid(pid, sig)
            leftovers = [
                pid
                for pid in leftovers
                if _wait_gone(pid, timeout=5 if sig == signal.SIGTERM else 2)
            ]
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None

    def running(self) -> bool:
        """True while the top process runs."""
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        """The log's length now; `log_since` reads what comes after."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        """The log written after `offset`."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log, headed by its path."""
        text = self.log_since(0) if self.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail}"


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for `pid` to end; True if it is still alive afterwards."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


class Stack:
    """A baked project's compose services, run natively on 127.0.0.1.

    `start()` follows compose's order (depends_on): redis-server, the one-shot `setup`, the Python
    servers (`app` under supervisor; `wsgi` and `asgi` under compose), then nginx. It records
    how long each took in `phases` ({"setup (one-shot)": s, "redis listening": s, ...}), and
    calls `on_phase(name, seconds)` after each, when given.

    `env` is the native environment, shared by the Python servers: a change to it reaches them
    when they next start (`restart`); their commands and ports are fixed when `start()` makes
    them. nginx runs from the files it rendered into `nginx_root`.
    """

    def __init__(
        self,
        project: Path,
        tmp: Path,
        binaries: dict[str, str],
        *,
        on_phase: Callable[[str, float], None] | None = None,
    ) -> None:
        self.project = project
        self.tmp = tmp
        self.binaries = binaries
        self.on_phase = on_phase
        self.phases: dict[str, float] = {}
        self.dotenv = bake.read_env(project)
        # The services' shape (names, images, depends_on, volumes): the same with any env.
        self.compose = bake.load_compose(project, self.dotenv)
        self.services: dict[str, dict] = self.compose["services"]
        self.logs = tmp / "logs"
        self.nginx_root = tmp / "nginx"  # nginx's -p prefix: its rendered config, pid, logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.volume_dirs = {
            name: tmp / "volumes" / name for name in self.compose.get("volumes", {})
        }
        for folder in self.volume_dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        self.redis_service = bake.service_by_image(self.services, "redis")
        self.nginx_service = bake.service_by_image(self.services, "nginx")
        self.one_shots = bake.one_shot_services(self.services)
        # The Python services share one environment natively: a path in any one's named volume
        # (certbot's `acme`, `tls`) is that volume's folder for all of them, and for nginx.
        python_mounts = {}
        for service in self.services.values():
            if "build" in service:
                python_mounts |= bake.volume_mounts(service)
        (self.redis_port,) = free_ports(1)
        self.env = bake.native_env(
            self.dotenv,
            service_names=self.services,
            mounts=python_mounts,
            volume_dirs=self.volume_dirs,
            root=tmp / "root",
            redis_port=self.redis_port,
        )
        for key, value in self.dotenv.items():
            if value.startswith("/"):  # a container path, now under tmp: make its folder
                moved = Path(self.env[key])
                folder = moved if key.endswith(("_DIR", "_ROOT")) else moved.parent
                folder.mkdir(parents=True, exist_ok=True)
        venv_bin = str(Path(binaries["python"]).parent)
        self.env.update(
            IMAGE_ENV,
            PATH=os.pathsep.join([venv_bin, os.environ.get("PATH", os.defpath)]),
            HOME=str(tmp),
            LANG="C.UTF-8",
        )
        # Compose gives each container MAX_OPEN_FILES (ulimits); natively the servers inherit
        # this process's limits, which even root may not raise (no CAP_SYS_RESOURCE in a
        # sandbox), and supervisord refuses to start below its minfds: hold them to the limit.
        # (Each proxied WebSocket is two connections of one nginx worker, so natively one
        # worker may hold up to the limit; the checker's 2x margin is for the shipped values.)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for key in ("MAX_OPEN_FILES", "NGINX_WORKER_CONNECTIONS"):
            if key in self.env and int(self.env[key]) > hard:
                self.env[key] = str(hard)
        self.http_port = int(self.env["HTTP_PORT"])
        # A TLS bake (https != none): nginx serves the site on HTTPS_PORT; clients trust the
        # certificate through `tls_context`, which the test that made the certificate sets.
        self.https_port = int(self.env["HTTPS_PORT"]) if "HTTPS_PORT" in self.env else None
        self.tls_context: ssl.SSLContext | None = None
        self.domain = self.env["NGINX_SERVER_NAME"]
        self.servers: dict[str, Server] = {}
        self.nginx_env: dict[str, str] = {}

    @property
    def process_manager(self) -> str:
        """`supervisor` when one service runs supervisord, else `compose`."""
        return "supervisor" if "app" in self.services else "compose"

    @property
    def origin(self) -> str:
        """The Origin a browser on this site sends."""
        if self.https_port is not None:
            return f"https://{self.domain}:{self.https_port}"
        return f"http://{self.domain}:{self.http_port}"

    @property
    def static_root(self) -> Path:
        """The folder collectstatic filled (the `static` volume)."""
        return Path(self.env["DJANGO_STATIC_ROOT"])

    def service(self, name: str, env: dict[str, str] | None = None) -> dict:
        """Service `name` of compose.yaml, interpolated with `env` (default: `self.env` now)."""
        return bake.load_compose(self.project, self.env if env is None else env)["services"][name]

    def command(self, name: str, env: dict[str, str] | None = None) -> list[str]:
        """Service `name`'s `command:` with `env` (default: `self.env`), run as the binary the
        fixtures checked (venv first, as the image's PATH)."""
        argv = bake.command_argv(self.service(name, env))
        return [self.binaries.get(argv[0], argv[0]), *argv[1:]]

    # Starting and stopping ---------------------------------------------------------------------

    def start(self) -> None:
        """Start every service in compose's order; on any failure stop what already runs."""
        try:
            for name in bake.start_order(self.services):
                began = time.perf_counter()
                if name in self.one_shots:
                    self._run_once(name)
                    self._phase(f"{name} (one-shot)", began)
                else:
                    server = self._server(name)
                    self.servers[name] = server
                    server.start()
                    if name == self.nginx_service:
                        self._start_entrypoint_scripts()
                    self._phase(f"{name} listening", began)
            began = time.perf_counter()
            self.wait_serving()
            self._phase("wait until page, WebSocket and every Daphne serve", began)
        except BaseException:
            self.stop()
            raise

    def _phase(self, name: str, began: float) -> None:
        seconds = time.perf_counter() - began
        self.phases[name] = seconds
        if self.on_phase is not None:
            self.on_phase(name, seconds)

    def stop(self) -> None:
        """Stop the servers, last started first."""
        for server in reversed(list(self.servers.values())):
            server.stop()

    def restart(self, *names: str) -> None:
        """Stop these servers, then start them again in the same order, with the same commands
        and ports (and `env` as it is now: the Python servers share that dict)."""
        for name in names:
            self.servers[name].stop()
        for name in names:
            self.servers[name].start()

    def _run_once(self, name: str) -> None:
        argv = self.command(name)
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            try:
                result = subprocess.run(  # noqa: S603 - argv comes from the baked compose.yaml
                    argv,
                    cwd=self.project,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=START_TIMEOUT,
                    check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                raise StackError(f"{name} did not finish: {argv}") from None
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text().splitlines()[-LOG_TAIL_LINES:])
            raise StackError(f"{name} exited with {result.returncode}: {argv}\n{tail}")

    def _server(self, name: str) -> Server:
        service = self.service(name)
        log_path = self.logs / f"{name}.log"
        if name == self.redis_service:
            folder = self.volume_dirs.get(
                next(iter(bake.volume_mounts(service)), ""), self.tmp / "redis"
            )
            folder.mkdir(parents=True, exist_ok=True)
            # The one service whose address compose.yaml does not hold: remap it here.
            argv = self.command(name) + [
                "--port",
                str(self.redis_port),
                "--bind",
                LOOPBACK,
                "--dir",
                str(folder),
            ]
            return Server(
                name, argv, cwd=folder, env=self.env, log_path=log_path, ports=[self.redis_port]
            )
        if name == self.nginx_service:
            argv, env = self.nginx_command()
            return Server(
                name,
                argv,
                cwd=self.tmp,
                env=env,
                log_path=log_path,
                ports=[self.http_port, *([self.https_port] if self.https_port else [])],
            )
        # A Python service. Compose runs ASGI_WORKERS replicas of `asgi` (deploy.replicas), each
        # in its own container on the same port; natively one process holds the port, so one
        # replica runs here. Cross-process fan-out is proved under supervisor (numprocs).
        return Server(
            name,
            self.command(name),
            cwd=self.project,
            env=self.env,
            log_path=log_path,
            ports=bake.healthcheck_ports(service, self.env),
        )

    def _start_entrypoint_scripts(self) -> None:
        """Run the scripts compose.yaml mounts into the nginx image's /docker-entrypoint.d/ (the
        image runs them before nginx; what they leave running, natively, lives in their own
        session beside nginx), with nginx's environment and its pid file."""
        service = self.service(self.nginx_service)
        for volume in service.get("volumes", []):
            source, _, rest = str(volume).partition(":")
            target = PurePosixPath(rest.split(":")[0])
            if not (source.startswith(".") and target.parent == ENTRYPOINT_DIR):
                continue
            if target.suffix != ".sh":
                continue
            name = f"{self.nginx_service} {target.name}"
            env = {**self.nginx_env, "NGINX_PID_FILE": str(self.nginx_root / "nginx.pid")}
            server = Server(
                name,
                ["sh", str((self.project / source).resolve())],
                cwd=self.tmp,
                env=env,
                log_path=self.logs / f"{target.stem}.log",
                ports=[],
            )
            self.servers[name] = server
            server.start()

    def nginx_command(self) -> tuple[list[str], dict[str, str]]:
        """Render the templates as the nginx image does (nginx.conf and the site), move the
        image's paths into tmp, and return the command that runs it and its environment."""
        service = self.service(self.nginx_service)
        root = self.nginx_root
        temp = root / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        mounts = bake.volume_mounts(service)
        env = {"PATH": self.env["PATH"]}
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            # A path from .env (`${TLS_CERTIFICATE}`) was already moved under tmp by native_env.
            if value.startswith("/") and not Path(value).is_relative_to(self.tmp):
                value = str(
                    bake.native_path(
                        PurePosixPath(value), mounts, self.volume_dirs, self.tmp / "root"
                    )
                )
            env[key] = value
        # The image's paths, natively. Running as root, nginx would switch its workers to
        # `nginx` (or `nobody`), who cannot read tmp.
        moves = {
            "user nginx;": "user root;" if os.geteuid() == 0 else "",
            IMAGE_UWSGI_PARAMS: str(OFFICIAL_UWSGI_PARAMS),  # harness/nginx/uwsgi_params
            "/etc/nginx/default.conf": str(root / "default.conf"),
            "/var/run/nginx.pid": str(root / "nginx.pid"),
            "/var/log/nginx/": f"{root}/",
            "/var/cache/nginx/": f"{temp}/",
        }
        templates = self.project / "deploy" / "nginx" / "templates"
        for template in sorted(templates.glob("*.template")):
            text = template.read_text(encoding="utf-8")
            # Like the image, substitute only what the service's environment defines (a `${NAME}`
            # in a comment stays as it is), but a directive naming anything else is an error.
            names = sorted(set(TEMPLATE_VARIABLE.findall(text)) & set(env))
            directives = "\n".join(line.split("#")[0] for line in text.splitlines())
            missing = sorted(set(TEMPLATE_VARIABLE.findall(directives)) - set(env))
            if missing:
                raise StackError(f"{template} uses {missing}, not in the nginx service environment")
            rendered = subprocess.run(  # noqa: S603 - a fixed binary
                [self.binaries["envsubst"], " ".join(f"${{{name}}}" for name in names)],
                input=text,
                capture_output=True,
                text=True,
                env=env,
                check=True,
            ).stdout
            for image_path, native in moves.items():
                rendered = rendered.replace(image_path, native)
            rendered = http2_for(self.binaries["nginx"], rendered)
            (root / template.name.removesuffix(".template")).write_text(rendered)
        self.nginx_env = env
        argv = [self.binaries["nginx"], "-p", str(root), "-e", str(root / "error.log")]
        return [*argv, "-g", "daemon off;", "-c", str(root / "nginx.conf")], env

    def wait_serving(self) -> None:
        """Wait until a page and a WebSocket handshake go through nginx (Daphne has imported
        Django, every supervisor program runs)."""
        from harness.clients import http_get, ws_handshake_ok

        def serving() -> bool:
            try:
                return http_get(self, "/chat/lobby/")[0] == 200 and ws_handshake_ok(self)
            except OSError:
                return False

        try:
            wait_until(serving, timeout=START_TIMEOUT, interval=0.2, what="page and WebSocket")
            if self.process_manager == "supervisor":
                workers = int(self.env["ASGI_WORKERS"])
                wait_until(
                    lambda: len(self.daphne_pids()) == workers,
                    timeout=START_TIMEOUT,
                    what=f"{workers} Daphne processes",
                )
        except TimeoutError as error:
            raise StackError(f"the stack is not serving: {error}\n{self.log_tails()}") from None

    # Looking inside -------------------------------------------------------------------------------

    @property
    def asgi_server(self) -> Server:
        """The server that runs Daphne (supervisord's `app`, or compose's `asgi`)."""
        return self.servers["app" if self.process_manager == "supervisor" else "asgi"]

    @property
    def wsgi_server(self) -> Server:
        """The server that runs uWSGI (supervisord's `app`, or compose's `wsgi`)."""
        return self.servers["app" if self.process_manager == "supervisor" else "wsgi"]

    def daphne_pids(self) -> list[int]:
        """PIDs of the running Daphne processes."""
        server = self.asgi_server
        candidates = [server.pid, *descendants(server.pid)]
        return [pid for pid in candidates if is_alive(pid) and " daphne " in f" {_argv0s(pid)} "]

    def daphne_clients(self) -> dict[int, int]:
        """{Daphne pid: client connections it holds} (every Daphne, 0 for one holding none)."""
        port = int(self.env["ASGI_PORT"])
        return {
            pid: len(held) for pid, held in established_sockets(self.daphne_pids(), port).items()
        }

    def uwsgi_master_and_workers(self) -> tuple[int, list[int]]:
        """uWSGI's master PID and its workers' PIDs."""
        server = self.wsgi_server
        uwsgi = [
            pid
            for pid in [server.pid, *descendants(server.pid)]
            if is_alive(pid) and "uwsgi" in cmdline(pid).lower()
        ]
        parents = {pid: parent(pid) for pid in uwsgi}
        masters = [pid for pid in uwsgi if parents[pid] not in uwsgi]
        assert len(masters) == 1, f"expected one uWSGI master among {uwsgi}"
        master = masters[0]
        return master, [pid for pid in uwsgi if parents[pid] == master]

    def redis_subscriptions(self) -> int:
        """How many pub/sub channels Redis has subscribers for (the pub/sub layer's groups and
        consumer channels), plus, under the core layer, how many group keys exist."""
        argv = ["redis-cli", "-p", str(self.redis_port)]
        channels = subprocess.run(  # noqa: S603 - fixed argv
            [*argv, "PUBSUB", "CHANNELS", "*"], capture_output=True, text=True, check=True
        ).stdout.split()
        keys = subprocess.run(  # noqa: S603 - fixed argv
            [*argv, "--scan", "--pattern", "*group*"], capture_output=True, text=True, check=True
        ).stdout.split()
        return len(channels) + len(keys)

    def server_pids(self) -> set[int]:
        """Every running server process (top processes and all their descendants)."""
        pids = set()
        for server in self.servers.values():
            if server.running():
                pids.update([server.pid, *descendants(server.pid)])
        return {pid for pid in pids if is_alive(pid)}

    def log_files(self) -> dict[str, Path]:
        """{name: log file} of every server, the one-shots and nginx's own error log."""
        files = {name: server.log_path for name, server in self.servers.items()}
        files.update({name: self.logs / f"{name}.log" for name in self.one_shots})
        files["nginx error.log"] = self.nginx_root / "error.log"
        return {name: path for name, path in files.items() if path.exists()}

    def log_sizes(self) -> dict[str, int]:
        """{log: its length now}, for `logs_since`."""
        return {name: path.stat().st_size for name, path in self.log_files().items()}

    def logs_since(self, sizes: dict[str, int]) -> dict[str, str]:
        """{log: what it gained since `sizes`}."""
        texts = {}
        for name, path in self.log_files().items():
            with path.open("rb") as log:
                log.seek(sizes.get(name, 0))
                texts[name] = log.read().decode(errors="replace")
        return texts

    def errors_since(self, sizes: dict[str, int], allow: re.Pattern | None = None) -> list[str]:
        """Log lines since `sizes` that report an error: tracebacks, ERROR/CRITICAL records,
        nginx [error] and worse, a supervisor program that died unexpectedly; minus `allow`."""
        return [
            f"{name}: {line}"
            for name, text in self.logs_since(sizes).items()
            for line in text.splitlines()
            if ERROR_LINE.search(line) and not (allow and allow.search(line))
        ]

    def log_tails(self) -> str:
        """The last lines of every log."""
        parts = []
        for name, path in self.log_files().items():
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            parts.append(f"--- {name}: {path} (last {LOG_TAIL_LINES} lines) ---")
            parts.extend(lines)
        return "\n".join(parts)


def nginx_version(nginx: str) -> tuple[int, ...]:
    """The version of the nginx binary (`nginx -v` writes "nginx version: nginx/1.22.1")."""
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr)
    return tuple(int(part) for part in found.groups()) if found else (0,)


def http2_for(nginx: str, config: str) -> str:
    """`config` as this nginx reads HTTP/2: nginx before 1.25.1 (Debian 12 ships 1.22) has no
    `http2 on;` (the image's 1.27 does), only the older `listen ... ssl http2` it replaced."""
    if "http2 on;" not in config or nginx_version(nginx) >= (1, 25, 1):
        return config
    lines = config.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.strip() == "http2 on;":
            lines[number] = ""
            listen = max(i for i in range(number) if lines[i].lstrip().startswith("listen "))
            lines[listen] = lines[listen].replace(";", " http2;", 1)
    return "".join(lines)


def _argv0s(pid: int) -> str:
    """The program names in a command line (`python .../daphne --fd 0` -> `python daphne`)."""
    return " ".join(Path(part).name for part in cmdline(pid).split()[:2])
