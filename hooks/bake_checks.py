"""The template's bake-time checks: the rules a generated project's deploy/check.py does not ship.

`python hooks/bake_checks.py PROJECT_DIR` runs every rule of PROJECT_DIR/deploy/check.py and
these, prints one line per problem and exits 1, or prints "ok" and exits 0. The post-generation
hook runs it on every bake, so a template change that breaks one of these fails the bake loudly.

The shipped checker keeps what a user editing the project most often breaks (its docstring lists
them); these guard the template's own structure, which a user rarely touches: nginx's locations
against the WebSocket routes and Django's static files, the template and static volumes, every
service reading .env, uWSGI's $(VAR) guards, the files and apps commands name, healthchecks and
restart policies, stop signals, loopback binds, published ports, header buffers, file limits, and
on a TLS site the ACME challenge path over plain http and the certificate's mounts.
They read the project with the shipped checker's readers (loaded from the project by path), so
each format has one reader. Standard library and PyYAML only: cookiecutter's Python runs this.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

CHECKER = "deploy/check.py"
COMPOSE = "compose.yaml"
ENV_EXAMPLE = ".env.example"
ENV_FILE = ".env"
NGINX_TEMPLATE = "deploy/nginx/templates/default.conf.template"
NGINX_MAIN_TEMPLATE = "deploy/nginx/templates/nginx.conf.template"
UWSGI_INI = "deploy/uwsgi.ini"
SUPERVISORD_CONF = "deploy/supervisor/supervisord.conf"
SETTINGS = "config/settings.py"
ROUTING = "chat/routing.py"

# Where the official nginx image looks for templates to render with envsubst at start.
NGINX_TEMPLATE_DIR = "/etc/nginx/templates"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
REDIS_DEFAULT_PORT = 6379
# Request headers: nginx's limit and default, what it adds to them for uWSGI, uWSGI's buffer.
NGINX_HEADER_LIMIT = "large_client_header_buffers"
NGINX_DEFAULT_HEADER_BUFFERS = ("4", "8k")
NGINX_UWSGI_PARAMS_BYTES = 1024
UWSGI_DEFAULT_BUFFER = 4096
UWSGI_MAX_PACKET = 65535
NGINX_DEFAULT_CONNECTIONS = 512
# https: where certbot's webroot challenges are fetched, always over plain http (RFC 8555 8.3).
ACME_PATH = "/.well-known/acme-challenge/"
# The script that checks the certificate nginx serves, in a one-shot service before nginx.
TLS_CHECK = "deploy/tls_check.py"
# https=letsencrypt: the script that runs certbot and writes the certificate nginx serves.
ACME_SCRIPT = "deploy/acme.py"
# Files a command names, recognised by their suffix.
FILE_SUFFIXES = (".py", ".ini", ".conf", ".sh")


# The project's own deploy/check.py, whose readers every rule here uses, and its Problem, which
# every rule here reports (load_project sets both).
checker: ModuleType
Problem: type


def load_checker(root: Path) -> ModuleType:
    """The project's own deploy/check.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("project_deploy_check", root / CHECKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def healthcheck_argv(service: dict) -> list[str]:
    """A compose healthcheck's test as words ([] when there is none)."""
    test = (service.get("healthcheck") or {}).get("test") or []
    if isinstance(test, str):
        return shlex.split(test)
    if test and test[0] == "CMD-SHELL":
        return shlex.split(" ".join(test[1:]))
    return [str(word) for word in test if word != "CMD"]


def split_address(address: str) -> tuple[str, int] | None:
    """("host", port) from `host:port` or `tcp://host:port`; None when it is no TCP address."""
    address = address.removeprefix("tcp://")
    host, _, port = address.rpartition(":")
    return (host, int(port)) if port.isdigit() else None


def signal_name(signal: object) -> str:
    """TERM from SIGTERM or TERM."""
    return str(signal).upper().removeprefix("SIG")


@dataclass(frozen=True)
class Server:
    """A uWSGI or Daphne that a compose service runs: where it listens and how it is stopped."""

    kind: str  # "uwsgi" or "daphne"
    service: str  # the compose service whose container runs it
    config: str  # the file that says where it listens (uwsgi.ini, supervisord.conf, compose.yaml)
    launcher: str  # the file that starts and stops it (supervisord.conf or compose.yaml)
    binds: tuple[tuple[str, int], ...] | None  # None: its config could not be read
    app: str | None  # "module:attribute" it serves
    app_dir: Path  # the folder `app` is imported from
    stop_signal: str  # what the launcher sends to stop it
    die_on_term: bool = False  # uWSGI only: does TERM stop it (or reload it)?


@dataclass
class Project:
    """Everything the rules read, loaded once (the shipped checker's project, and more)."""

    root: Path
    checker: ModuleType
    env_example: dict[str, str]
    env: dict[str, str]  # what compose reads: .env.example overridden by .env, if present
    env_file: dict[str, str] | None  # .env itself (None when absent, as in CI)
    services: dict[str, dict]  # compose services, with ${VAR} expanded
    nginx_service: str
    nginx: object  # default.conf.template as the checker's nginx tree (check.Directive)
    nginx_main: object | None  # nginx.conf.template, likewise (None: the image's own)
    servers: list[Server]
    opaque_services: set[str]  # run supervisord with a config that cannot be read

    def relative(self, path: Path) -> str:
        """`path` relative to the project, for messages."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def env_source(self, name: str) -> str:
        """The file a variable's value comes from: .env when it overrides .env.example."""
        if self.env_file is not None and self.env_file.get(name) != self.env_example.get(name):
            return ENV_FILE
        return ENV_EXAMPLE


def env_files(service: dict) -> list[str]:
    """The env_file entries of a compose service, as paths."""
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [entry["path"] if isinstance(entry, dict) else entry for entry in entries]


def service_environment(base: dict[str, str], service: dict) -> dict[str, str]:
    """The variables a container sees: `base` (from its env_file) updated by its `environment:`."""
    result = dict(base)
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    result.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return result


def expand_uwsgi(value: str, ini: Path, env: dict[str, str]) -> str:
    """Expand uWSGI's $(VAR) and %d (this file's folder, with a trailing slash)."""
    value = re.sub(r"\$\((\w+)\)", lambda match: env.get(match[1], match[0]), value)
    return value.replace("%d", f"{ini.parent}/")


def uwsgi_server(
    root: Path, service: str, argv: list[str], base: Path, launch: tuple[str, str], env: dict
) -> Server:
    """The uWSGI that `uwsgi --ini FILE` starts; `base` is the folder FILE is relative to."""
    launcher, stop_signal = launch
    ini_arg = checker.option(argv, "--ini") or ""
    ini = (base / ini_arg).resolve()
    config = str(ini.relative_to(root)) if ini.is_relative_to(root) else str(ini)
    if not ini_arg or not ini.is_file():
        return Server("uwsgi", service, config, launcher, None, None, root, stop_signal)
    options = [(key, expand_uwsgi(value, ini, env)) for key, value in checker.read_uwsgi_ini(ini)]
    addresses = [split_address(v) for k, v in options if k in ("socket", "uwsgi-socket")]
    binds = None if None in addresses else tuple(addresses)
    module = next((value for key, value in options if key in ("module", "wsgi")), None)
    if module and ":" not in module:
        module += ":application"  # uWSGI's default callable
    chdir = next((value for key, value in options if key == "chdir"), None)
    die_on_term = any(
        key == "die-on-term" and value.lower() in ("1", "true", "yes", "on")
        for key, value in options
    )
    app_dir = Path(chdir).resolve() if chdir else root
    return Server(
        "uwsgi", service, config, launcher, binds, module, app_dir, stop_signal, die_on_term
    )


def daphne_server(
    service: str, argv: list[str], directory: Path, launch: tuple[str, str], fd_socket: str
) -> Server:
    """The Daphne that `argv` starts; with `--fd`, it serves the launcher's `fd_socket`."""
    launcher, stop_signal = launch
    if checker.option(argv, "--fd") is not None:
        address = split_address(fd_socket)
    else:  # Daphne's defaults: 127.0.0.1:8000
        host = checker.option(argv, "--bind", "-b") or "127.0.0.1"
        port = checker.option(argv, "--port", "-p") or "8000"
        address = (host, int(port)) if port.isdigit() else None
    binds = None if address is None else (address,)
    apps = [word for word in argv[1:] if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", word)]
    app = apps[-1] if apps else None
    return Server("daphne", service, launcher, launcher, binds, app, directory, stop_signal)


def supervised_servers(
    root: Path, service: str, conf: Path, env: dict[str, str]
) -> Iterator[Server]:
    """The uWSGI and Daphne programs a supervisord.conf starts."""
    launcher = str(conf.relative_to(root))
    for section, options in checker.read_supervisord_conf(conf, env).items():
        kind, _, _ = section.partition(":")
        if kind not in ("program", "fcgi-program"):
            continue
        argv = checker.command_argv(options.get("command", ""))
        directory = Path(options.get("directory") or root).resolve()
        launch = (launcher, signal_name(options.get("stopsignal", "TERM")))
        program = Path(argv[0]).name if argv else ""
        if program == "uwsgi":
            yield uwsgi_server(root, service, argv, directory, launch, env)
        elif program == "daphne":
            yield daphne_server(service, argv, directory, launch, options.get("socket", ""))


def find_servers(project: Project) -> tuple[list[Server], set[str]]:
    """Every uWSGI and Daphne the compose services run, and the services we cannot see into."""
    servers, opaque = [], set()
    for name, service in project.services.items():
        argv = checker.command_argv(service.get("command"))
        # .env's values even when env_file is wrong: stack.E015 reports that mistake once,
        # instead of every rule that follows a variable reporting it again.
        env = service_environment(project.env, service)
        launch = (COMPOSE, signal_name(service.get("stop_signal", "SIGTERM")))
        program = Path(argv[0]).name if argv else ""
        if program == "uwsgi":
            servers.append(uwsgi_server(project.root, name, argv, project.root, launch, env))
        elif program == "daphne":
            servers.append(daphne_server(name, argv, project.root, launch, ""))
        elif program == "supervisord":
            conf = project.root / (checker.option(argv, "-c", "--configuration") or "-")
            if conf.is_file():
                servers.extend(supervised_servers(project.root, name, conf, env))
            else:
                opaque.add(name)
    return servers, opaque


def load_project(root: Path) -> Project | Problem:
    """The shipped checker's view of the project, plus what these rules need."""
    global checker, Problem  # the readers and the problems of the project being checked
    checker = load_checker(root)
    Problem = checker.Problem
    shipped = checker.load_project(root)
    if isinstance(shipped, Problem):
        return shipped
    if not (root / ROUTING).is_file():
        return Problem("stack.E000", (ROUTING,), "missing; the checker needs it")
    main_path = root / NGINX_MAIN_TEMPLATE
    main = main_path.read_text(encoding="utf-8") if main_path.is_file() else None
    project = Project(
        root=root,
        checker=checker,
        env_example=shipped.env_example,
        env=shipped.env,
        env_file=shipped.env_file,
        services=shipped.services,
        nginx_service=shipped.nginx_service,
        nginx=shipped.nginx,
        nginx_main=None if main is None else checker.read_nginx(main, shipped.nginx_env),
        servers=[],
        opaque_services=set(),
    )
    project.servers, project.opaque_services = find_servers(project)
    return project


@dataclass(frozen=True)
class Location:
    """An nginx `location` block of a server."""

    modifier: str  # "", "=", "^~", "~" or "~*"
    path: str
    block: object  # check.Directive

    def passes_to(self) -> tuple[str, str] | None:
        """("uwsgi" or "proxy", upstream name or address) when it hands requests on."""
        # `set $name value;` in the location: the template names its servers through variables.
        values = {s.args[0][1:]: s.args[1] for s in self.block.find("set") if len(s.args) == 2}
        for directive, kind in (("uwsgi_pass", "uwsgi"), ("proxy_pass", "proxy")):
            for found in self.block.find(directive):
                target = re.sub(r"\$(\w+)", lambda m: values.get(m[1], m[0]), found.args[0])
                target = re.sub(r"^\w+://", "", target).split("/")[0]
                return kind, target
        return None


def nginx_locations(project: Project) -> Iterator[tuple[object, Location]]:
    """Every (server, location) pair of the rendered nginx config."""
    for server in project.nginx.find("server"):
        for block in server.find("location"):
            args = block.args
            modifier, path = (args[0], args[1]) if len(args) > 1 else ("", args[0])
            yield server, Location(modifier, path, block)


def nginx_addresses(project: Project, target: str) -> list[tuple[str, int]]:
    """The (host, port) pairs behind a *_pass target: an upstream's servers, or the address."""
    upstreams = {u.args[0]: u for u in project.nginx.find("upstream") if u.args}
    if target in upstreams:
        entries = [server.args[0] for server in upstreams[target].find("server") if server.args]
    else:
        entries = [target]
    addresses = []
    for entry in entries:
        if not entry.startswith("unix:"):
            host, _, port = entry.partition(":")
            addresses.append((host, int(port) if port.isdigit() else 80))
    return addresses


def nginx_targets(project: Project, kind: str) -> set[tuple[str, int]]:
    """The addresses nginx hands requests to with uwsgi_pass ("uwsgi") or proxy_pass ("proxy")."""
    targets = set()
    for _, location in nginx_locations(project):
        passing = location.passes_to()
        if passing and passing[0] == kind:
            targets.update(nginx_addresses(project, passing[1]))
    return targets


def nginx_listens(project: Project) -> set[tuple[str, int]]:
    """The (host, port) pairs nginx's servers listen on."""
    addresses = set()
    for server in project.nginx.find("server"):
        for listen in server.find("listen"):
            host, _, port = listen.args[0].rpartition(":")
            if port.isdigit():
                addresses.add((host or "*", int(port)))
    return addresses


def best_location(project: Project, server: object, path: str) -> Location | None:
    """The prefix location nginx picks for `path` in `server` (longest prefix; no regexes)."""
    candidates = [
        location
        for owner, location in nginx_locations(project)
        if owner is server
        and location.modifier in ("", "^~", "=")
        and (path == location.path if location.modifier == "=" else path.startswith(location.path))
    ]
    return max(candidates, key=lambda location: len(location.path), default=None)


def proxying_servers(project: Project) -> list[object]:
    """The nginx servers that hand any request on (not the catch-all default server)."""
    return [
        server
        for server in project.nginx.find("server")
        if any(owner is server and loc.passes_to() for owner, loc in nginx_locations(project))
    ]


def websocket_route_prefixes(root: Path) -> list[str]:
    """The literal start of each route in chat/routing.py's websocket_urlpatterns ("ws/chat/")."""
    tree = ast.parse((root / ROUTING).read_text(encoding="utf-8"))
    prefixes = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)):
            continue
        if not any(getattr(t, "id", "") == "websocket_urlpatterns" for t in node.targets):
            continue
        for call in node.value.elts:
            if not (isinstance(call, ast.Call) and call.args):
                continue
            route = call.args[0]
            if isinstance(route, ast.JoinedStr):  # an f-string: its text up to the first {}
                route = route.values[0] if route.values else ast.Constant("")
            if isinstance(route, ast.Constant) and isinstance(route.value, str):
                is_regex = getattr(call.func, "id", "") == "re_path"
                stop = r"[\\.^$*+?{}\[\]|()]" if is_regex else r"<"
                prefixes.append(re.split(stop, route.value.removeprefix("^"))[0])
    return prefixes


def settings_tree(root: Path) -> ast.Module:
    """config/settings.py, parsed."""
    return ast.parse((root / SETTINGS).read_text(encoding="utf-8"))


def settings_constant(root: Path, name: str) -> object:
    """The literal value of a top-level setting (None when it is not a literal)."""
    for node in settings_tree(root).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            return node.value.value if isinstance(node.value, ast.Constant) else None
    return None


def volume_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume a compose service mounts."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry.get("target", ""))))
        else:
            source, _, rest = str(entry).partition(":")
            mounts.append((source, rest.split(":")[0]))
    return mounts


def is_named_volume(source: str) -> bool:
    """A named volume, not a host path (./x, /x, ~/x)."""
    return bool(source) and not source.startswith((".", "/", "~"))


def built_services(project: Project) -> dict[str, dict]:
    """The services that run this project's own image (they have `build:`)."""
    return {name: svc for name, svc in project.services.items() if "build" in svc}


def one_shot_services(project: Project) -> set[str]:
    """Services others wait on to finish (depends_on ... service_completed_successfully)."""
    names = set()
    for service in project.services.values():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, dict):
            for name, condition in depends_on.items():
                if (condition or {}).get("condition") == "service_completed_successfully":
                    names.add(name)
    return names


def published_ports(service: dict) -> list[tuple[str, str]]:
    """(host port, container port) of each `ports:` entry; host port "" when compose picks it."""
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append((str(entry.get("published", "")), str(entry.get("target", ""))))
        else:
            parts = str(entry).split("/")[0].rsplit(":", 2)
            container = parts[-1]
            host = parts[-2] if len(parts) > 1 else ""
            ports.append((host, container))
    return ports


def redis_port(service: dict) -> int:
    """The port a redis service listens on: `--port N` in its command, else Redis' default."""
    port = checker.option(checker.command_argv(service.get("command")), "--port")
    return int(port) if port and port.isdigit() else REDIS_DEFAULT_PORT


def is_redis(service: dict) -> bool:
    """Does this compose service run Redis?"""
    image = str(service.get("image", "")).split("/")[-1]
    argv = checker.command_argv(service.get("command"))
    return image.startswith("redis") or (bool(argv) and Path(argv[0]).name == "redis-server")


def defines_name(path: Path, name: str) -> bool:
    """Does the Python file define `name` at its top level (assignment, def, class, import)?"""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            return True
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == name:
            return True
        definition = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        if isinstance(node, definition) and node.name == name:
            return True
        imported = isinstance(node, ast.Import | ast.ImportFrom)
        if imported and any((alias.asname or alias.name) == name for alias in node.names):
            return True
    return False


def kind_name(kind: str) -> str:
    """uWSGI or Daphne, for messages."""
    return {"uwsgi": "uWSGI", "daphne": "Daphne"}[kind]


# nginx hands pages over with uwsgi_pass (to uWSGI) and WebSockets with proxy_pass (to Daphne).
PASS_KINDS = (("uwsgi", "uwsgi", "uwsgi_pass"), ("proxy", "daphne", "proxy_pass"))


def check_healthchecks_probe_bound_ports(project: Project) -> Iterator[Problem]:
    """stack.E022: a healthcheck probes a port its service binds (deploy/healthcheck.py, nginx).

    A port nginx also sends requests to is stack.E002's to report (the shipped checker), once.
    """
    targeted = {target for kind, _, _ in PASS_KINDS for target in nginx_targets(project, kind)}
    for name, service in project.services.items():
        argv = healthcheck_argv(service)
        if name == project.nginx_service:
            bound = {port for _, port in nginx_listens(project)}
            urls = [urlsplit(word) for word in argv if "://" in word]
            probed = [url.port or 80 for url in urls]
            config = NGINX_TEMPLATE
        else:
            servers = [s for s in project.servers if s.service == name]
            if not servers or any(server.binds is None for server in servers):
                continue
            bound = {port for server in servers for _, port in server.binds}
            script = [i for i, word in enumerate(argv) if word.endswith("healthcheck.py")]
            # Arguments are PORT or http:PORT (see deploy/healthcheck.py).
            targets = [w.rpartition(":")[2] for w in argv[script[0] + 1 :]] if script else []
            probed = [int(port) for port in targets if port.isdigit()]
            config = servers[0].config
        for port in probed:
            if port not in bound and (name, port) not in targeted:
                yield Problem(
                    "stack.E022",
                    (COMPOSE, config),
                    f"service {name!r}: its healthcheck probes port {port}, which it does not bind "
                    f"({', '.join(map(str, sorted(bound)))})",
                )


def check_websocket_locations(project: Project) -> Iterator[Problem]:
    """stack.E004: nginx sends the WebSocket routes' paths to Daphne, and only those."""
    prefixes = websocket_route_prefixes(project.root)
    for server in proxying_servers(project):
        for prefix in prefixes:
            location = best_location(project, server, "/" + prefix) if prefix else None
            if location is not None and (location.passes_to() or ("", ""))[0] != "proxy":
                yield Problem(
                    "stack.E004",
                    (ROUTING, NGINX_TEMPLATE),
                    f"WebSocket route {prefix!r} is served by nginx's location {location.path}, "
                    "which does not proxy_pass to Daphne",
                )
        for owner, location in nginx_locations(project):
            passing = location.passes_to()
            if owner is not server or location.path == "/" or location.modifier.startswith("~"):
                continue
            if passing and passing[0] == "proxy":
                path = location.path.lstrip("/")
                if not any(path.startswith(p) or p.startswith(path) for p in prefixes):
                    yield Problem(
                        "stack.E004",
                        (NGINX_TEMPLATE, ROUTING),
                        f"location {location.path} proxies to Daphne, but no websocket route "
                        f"matches it (routes start with: {', '.join(prefixes) or 'nothing'})",
                    )


def check_pages_go_to_uwsgi(project: Project) -> Iterator[Problem]:
    """stack.E005: `location /` hands pages to uWSGI with uwsgi_pass, never to Daphne."""
    for server in proxying_servers(project):
        location = best_location(project, server, "/")
        passing = location.passes_to() if location else None
        if location is None or location.path != "/":
            yield Problem(
                "stack.E005",
                (NGINX_TEMPLATE, UWSGI_INI),
                "the server that proxies has no `location /` sending pages to uWSGI",
            )
        elif passing is None or passing[0] != "uwsgi":
            yield Problem(
                "stack.E005",
                (NGINX_TEMPLATE, UWSGI_INI),
                f"location / must use uwsgi_pass to uWSGI, but it uses "
                f"{(passing[0] + '_pass ' + passing[1]) if passing else 'no *_pass'}",
            )


def static_locations(project: Project) -> Iterator[tuple[Location, str]]:
    """(location, folder on disk) for each location nginx serves static files from with alias /
    root (ACME challenges are files too, but certbot's, not collectstatic's: stack.E060)."""
    for _, location in nginx_locations(project):
        if location.path == ACME_PATH:
            continue
        for alias in location.block.find("alias"):
            yield location, alias.args[0].rstrip("/")
        for root in location.block.find("root"):
            yield location, root.args[0].rstrip("/") + location.path.rstrip("/")


def check_static_is_a_volume(project: Project) -> Iterator[Problem]:
    """stack.E006: the folder nginx serves static files from is a named volume's mount point."""
    mounts = volume_mounts(project.services[project.nginx_service])
    for location, folder in static_locations(project):
        if not any(is_named_volume(source) and target == folder for source, target in mounts):
            named = [f"{source}:{target}" for source, target in mounts if is_named_volume(source)]
            yield Problem(
                "stack.E006",
                (NGINX_TEMPLATE, COMPOSE),
                f"location {location.path} serves {folder}, which is no named volume's mount "
                f"point in service {project.nginx_service!r} ({', '.join(named) or 'no volumes'})",
            )


def check_static_volume_is_collected(project: Project) -> Iterator[Problem]:
    """stack.E007: the static volume nginx reads is mounted at DJANGO_STATIC_ROOT everywhere."""
    mounts = volume_mounts(project.services[project.nginx_service])
    static_root = project.env.get("DJANGO_STATIC_ROOT")
    for _, folder in static_locations(project):
        volumes = {
            source for source, target in mounts if is_named_volume(source) and target == folder
        }
        for volume in sorted(volumes):
            for name, service in built_services(project).items():
                if (volume, static_root) not in volume_mounts(service):
                    yield Problem(
                        "stack.E007",
                        (COMPOSE, project.env_source("DJANGO_STATIC_ROOT")),
                        f"service {name!r} does not mount volume {volume!r} (nginx's static "
                        f"files) at DJANGO_STATIC_ROOT={static_root}, where collectstatic writes",
                    )


def check_static_url(project: Project) -> Iterator[Problem]:
    """stack.E008: settings.STATIC_URL is the location nginx serves static files at."""
    static_url = settings_constant(project.root, "STATIC_URL")
    paths = sorted({location.path for location, _ in static_locations(project)})
    if isinstance(static_url, str) and static_url not in paths:
        yield Problem(
            "stack.E008",
            (SETTINGS, NGINX_TEMPLATE),
            f"STATIC_URL = {static_url!r}, but nginx serves static files at "
            f"{', '.join(paths) or 'no location'}",
        )


def check_nginx_template_is_mounted(project: Project) -> Iterator[Problem]:
    """stack.E009: the nginx service mounts the template folder where its image renders it."""
    folder = str(Path(NGINX_TEMPLATE).parent)
    mounts = volume_mounts(project.services[project.nginx_service])
    if not any(
        source.removeprefix("./").rstrip("/") == folder and target == NGINX_TEMPLATE_DIR
        for source, target in mounts
    ):
        yield Problem(
            "stack.E009",
            (COMPOSE, NGINX_TEMPLATE),
            f"service {project.nginx_service!r} must mount ./{folder} at {NGINX_TEMPLATE_DIR}, "
            "where the nginx image renders templates",
        )


def check_uwsgi_variables_are_guarded(project: Project) -> Iterator[Problem]:
    """stack.E017: every $(VAR) in uwsgi.ini has an `if-not-env` guard (unset, uWSGI would use
    the literal text, and happily bind a socket named `$(WSGI_BIND)`)."""
    path = project.root / UWSGI_INI
    if not path.is_file():
        return
    options = checker.read_uwsgi_ini(path)
    names = {name for _, value in options for name in re.findall(r"\$\((\w+)\)", value)}
    guarded = {value for key, value in options if key == "if-not-env"}
    for name in sorted(names - guarded):
        yield Problem(
            "stack.E017",
            (UWSGI_INI,),
            f"$({name}) has no `if-not-env = {name}` guard; unset, uWSGI uses the literal text",
        )


def check_services_read_env(project: Project) -> Iterator[Problem]:
    """stack.E015: every service running the project's image reads .env (env_file: .env)."""
    for name, service in built_services(project).items():
        if ENV_FILE not in env_files(service):
            yield Problem(
                "stack.E015",
                (COMPOSE, ENV_FILE),
                f"service {name!r} runs the project but has no `env_file: {ENV_FILE}`",
            )


def named_files(argv: list[str], base: Path) -> Iterator[Path]:
    """The files a command names (by suffix), relative to `base` when not absolute."""
    for word in argv:
        path = word.rpartition("=")[2] if word.startswith("-") else word
        if path.endswith(FILE_SUFFIXES) and "://" not in path:
            yield base / path


def command_files(project: Project) -> Iterator[tuple[str, Path]]:
    """(file naming it, path) for every file a compose or supervisor command names."""
    for service in project.services.values():
        for argv in (checker.command_argv(service.get("command")), healthcheck_argv(service)):
            if service is not project.services[project.nginx_service]:
                for path in named_files(argv, project.root):
                    yield COMPOSE, path
    conf = project.root / SUPERVISORD_CONF
    if conf.is_file():
        for options in checker.read_supervisord_conf(conf, project.env).values():
            argv = checker.command_argv(options.get("command", ""))
            for path in named_files(argv, Path(options.get("directory") or project.root)):
                yield SUPERVISORD_CONF, path


def check_command_files_exist(project: Project) -> Iterator[Problem]:
    """stack.E020: every file a compose or supervisor command names exists."""
    for config, path in command_files(project):
        inside = path.resolve().is_relative_to(project.root)
        if inside and not path.exists():
            yield Problem(
                "stack.E020",
                (config, project.relative(path)),
                "a command names this file, which does not exist",
            )


def check_server_apps_exist(project: Project) -> Iterator[Problem]:
    """stack.E021: the module:attribute uWSGI and Daphne serve exists (config.wsgi:application)."""
    for server in project.servers:
        if server.app is None:
            continue
        module, _, attribute = server.app.partition(":")
        base = server.app_dir / module.replace(".", "/")
        path = next(
            (p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None
        )
        if path is None:
            yield Problem(
                "stack.E021",
                (server.config, project.relative(base.with_suffix(".py"))),
                f"{kind_name(server.kind)} serves {server.app}, but module {module} does not exist",
            )
        elif not defines_name(path, attribute):
            yield Problem(
                "stack.E021",
                (server.config, project.relative(path)),
                f"{kind_name(server.kind)} serves {server.app}; {module} defines no {attribute}",
            )


def check_nginx_publishes_http_port(project: Project) -> Iterator[Problem]:
    """stack.E041: nginx publishes exactly HTTP_PORT (and HTTPS_PORT, when .env has one), each
    onto the same port inside, which its config listens on (the redirect to https names it)."""
    values = {key: project.env.get(key, "") for key in ("HTTP_PORT", "HTTPS_PORT")}
    allowed = {f"{key}={port}": port for key, port in values.items() if port}
    listen = sorted({str(port) for _, port in nginx_listens(project)})
    ports = published_ports(project.services[project.nginx_service])
    for host, container in ports:
        if host not in allowed.values() or container != host or container not in listen:
            yield Problem(
                "stack.E041",
                (COMPOSE, NGINX_TEMPLATE),
                f"nginx publishes {host or '(any)'}:{container}; it must publish only "
                f"{' and '.join(allowed)}, each onto itself, a port it listens on "
                f"({', '.join(listen)})",
            )
    if not ports:
        yield Problem("stack.E041", (COMPOSE, NGINX_TEMPLATE), "nginx publishes no port")


def check_services_recover(project: Project) -> Iterator[Problem]:
    """stack.E050: every long-running service has a healthcheck and a restart policy."""
    one_shot = one_shot_services(project)
    for name, service in project.services.items():
        if name in one_shot:
            continue
        healthcheck = service.get("healthcheck") or {}
        if not healthcheck.get("test") or healthcheck.get("disable"):
            yield Problem("stack.E050", (COMPOSE,), f"service {name!r} has no healthcheck")
        restart = service.get("restart") or (service.get("deploy") or {}).get("restart_policy")
        if restart in (None, "no"):
            yield Problem("stack.E050", (COMPOSE,), f"service {name!r} has no restart policy")


def check_uwsgi_stop_signal(project: Project) -> Iterator[Problem]:
    """stack.E051: uWSGI's die-on-term matches the signal its launcher stops it with.

    With die-on-term, TERM stops uWSGI (and QUIT would reload it); without, TERM reloads it.
    """
    for server in project.servers:
        if server.kind != "uwsgi" or server.binds is None:
            continue
        if server.die_on_term != (server.stop_signal == "TERM"):
            setting = "sets" if server.die_on_term else "does not set"
            wanted = "TERM" if server.die_on_term else "QUIT or INT"
            yield Problem(
                "stack.E051",
                (server.config, server.launcher),
                f"uwsgi.ini {setting} die-on-term, so it must be stopped with {wanted}, but "
                f"{server.launcher} sends {server.stop_signal}",
            )


def check_servers_listen_beyond_loopback(project: Project) -> Iterator[Problem]:
    """stack.E052: servers in containers listen on an address other containers reach."""
    for server in project.servers:
        for host, port in server.binds or ():
            if host in LOOPBACK_HOSTS:
                yield Problem(
                    "stack.E052",
                    (server.config, COMPOSE),
                    f"{kind_name(server.kind)} in service {server.service!r} binds {host}:{port}; "
                    "nginx runs in another container and cannot reach a loopback address",
                )
    for host, port in sorted(nginx_listens(project)):
        if host in LOOPBACK_HOSTS:
            yield Problem(
                "stack.E052",
                (NGINX_TEMPLATE, COMPOSE),
                f"nginx listens on {host}:{port}, which the published port cannot reach",
            )


def nginx_size(text: str) -> int:
    """An nginx size (`8k`, `1m`, `512`) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", text).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def all_directives(node: object) -> Iterator[object]:
    """Every directive below `node`, depth first."""
    for child in node.children:
        yield child
        yield from all_directives(child)


def check_uwsgi_buffer_holds_nginx_headers(project: Project) -> Iterator[Problem]:
    """stack.E053: uWSGI's buffer-size holds every request header set nginx accepts."""
    path = project.root / UWSGI_INI
    if not path.is_file():
        return
    sizes = [value for key, value in checker.read_uwsgi_ini(path) if key in ("buffer-size", "b")]
    buffer = int(sizes[-1]) if sizes and sizes[-1].isdigit() else UWSGI_DEFAULT_BUFFER
    limits = [d.args for d in all_directives(project.nginx) if d.name == NGINX_HEADER_LIMIT]
    number, size = limits[-1] if limits else NGINX_DEFAULT_HEADER_BUFFERS
    headers = int(number) * nginx_size(size)
    needed = headers + NGINX_UWSGI_PARAMS_BYTES
    if needed > UWSGI_MAX_PACKET:
        yield Problem(
            "stack.E053",
            (NGINX_TEMPLATE, UWSGI_INI),
            f"nginx passes up to {number} x {size} of request headers ({NGINX_HEADER_LIMIT}), "
            f"more than a uwsgi packet holds ({UWSGI_MAX_PACKET} bytes); lower it to 4 8k",
        )
    elif buffer < needed:
        yield Problem(
            "stack.E053",
            (UWSGI_INI, NGINX_TEMPLATE),
            f"uWSGI's buffer-size is {buffer}, but nginx passes up to {number} x {size} of "
            f"request headers ({NGINX_HEADER_LIMIT}); a request that large gets 502. Set "
            f"buffer-size = {needed} or more (at most {UWSGI_MAX_PACKET})",
        )


def nofile_limit(service: dict) -> int | None:
    """The soft open-files limit compose gives a service's containers (None: Docker's default)."""
    nofile = (service.get("ulimits") or {}).get("nofile")
    value = nofile.get("soft") if isinstance(nofile, dict) else nofile
    return int(value) if str(value).isdigit() else None


def check_connection_limits(project: Project) -> Iterator[Problem]:
    """stack.E054: nginx.conf.template exists and its worker_rlimit_nofile is at least twice its
    worker_connections (each WebSocket holds two files in nginx)."""
    if project.nginx_main is None:
        yield Problem(
            "stack.E054",
            (NGINX_MAIN_TEMPLATE, COMPOSE),
            "missing: nginx would run the image's nginx.conf, 1024 connections per worker "
            "(about 1,000 WebSockets on 2 cores)",
        )
        return
    rlimit, connections = nginx_limits(project)
    # Twice: a connection may hold a file too (a static file, a buffer spilled to disk).
    if rlimit is None or rlimit < 2 * connections:
        yield Problem(
            "stack.E054",
            (NGINX_MAIN_TEMPLATE, ENV_EXAMPLE),
            f"nginx's worker_rlimit_nofile ({rlimit or 'unset'}) must be at least twice its "
            f"worker_connections ({connections}): set MAX_OPEN_FILES >= 2 x "
            "NGINX_WORKER_CONNECTIONS",
        )


def nginx_limits(project: Project) -> tuple[int | None, int]:
    """nginx.conf's worker_rlimit_nofile (None: unset) and worker_connections."""
    events = project.nginx_main.find("events")
    found = [d.args[0] for e in events for d in e.find("worker_connections") if d.args]
    connections = int(found[-1]) if found and found[-1].isdigit() else NGINX_DEFAULT_CONNECTIONS
    found = [d.args[0] for d in project.nginx_main.find("worker_rlimit_nofile") if d.args]
    return (int(found[-1]) if found and found[-1].isdigit() else None), connections


def check_containers_may_open_enough_files(project: Project) -> Iterator[Problem]:
    """stack.E055: nginx's and every server's container may open worker_rlimit_nofile files
    (compose's `ulimits: nofile`; each WebSocket holds two in nginx, one in Daphne)."""
    if project.nginx_main is None:
        return  # stack.E054
    rlimit, connections = nginx_limits(project)
    if rlimit is None or rlimit < 2 * connections:
        return  # stack.E054
    services = {project.nginx_service} | {server.service for server in project.servers}
    for name in sorted(services):
        limit = nofile_limit(project.services[name])
        if limit is None or limit < rlimit:
            yield Problem(
                "stack.E055",
                (COMPOSE, NGINX_MAIN_TEMPLATE),
                f"service {name!r} may open {limit or 'Docker default'} files, fewer than "
                f"nginx's worker_rlimit_nofile ({rlimit}): give it `ulimits: nofile` of "
                "${MAX_OPEN_FILES}",
            )


def tls_servers(project: Project) -> list[object]:
    """The nginx servers that listen with `ssl` (none: the site is plain http)."""
    return [
        server
        for server in project.nginx.find("server")
        if any("ssl" in listen.args[1:] for listen in server.find("listen"))
    ]


def check_acme_challenges_over_http(project: Project) -> Iterator[Problem]:
    """stack.E060: a TLS site still answers ACME challenges over plain http, from a volume.

    certbot's webroot (and any ACME client's http-01) needs http://NAME/.well-known/acme-
    challenge/TOKEN to be a file, not the redirect to https: the location must win for that path,
    serve files, and no server-level `return` may answer before locations run.
    """
    if not tls_servers(project):
        return
    http_port = int(project.env.get("HTTP_PORT") or 0)
    names = set(project.env.get("NGINX_SERVER_NAME", "").split())
    servers = [
        server
        for server in project.nginx.find("server")
        if names & {word for d in server.find("server_name") for word in d.args}
        and any(port == http_port for _, port in listens_of(server))
    ]
    where = (NGINX_TEMPLATE,)
    if not servers:
        yield Problem(
            "stack.E060",
            where,
            f"no plain-http server for the site's name answers ACME challenges on "
            f"HTTP_PORT={http_port}",
        )
        return
    for server in servers:
        swallowing = [d.name for d in server.children if d.name in ("return", "rewrite")]
        location = best_location(project, server, ACME_PATH + "token")
        if swallowing:
            why = f"its server-level `{swallowing[0]}` answers before any location"
        elif location is None or location.path != ACME_PATH:
            found = location.path if location else "no location"
            why = f"it goes to {found}: add `location ^~ {ACME_PATH}` serving the webroot"
        elif location.modifier != "^~":
            why = f"`location {location.path}` needs `^~`, so no regex location takes it over"
        elif location.block.find("return") or location.block.find("rewrite"):
            why = f"`location {location.path}` redirects it instead of serving the file"
        elif not (location.block.find("root") or location.block.find("alias")):
            why = f"`location {location.path}` serves no folder (root)"
        else:
            yield from acme_root_is_a_volume(project, location)
            continue
        yield Problem("stack.E060", where, f"http://NAME{ACME_PATH}TOKEN is not served: {why}")


def listens_of(server: object) -> list[tuple[str, int]]:
    """The (host, port) pairs one nginx server listens on."""
    pairs = []
    for listen in server.find("listen"):
        host, _, port = listen.args[0].rpartition(":")
        if port.isdigit():
            pairs.append((host, int(port)))
    return pairs


def acme_root_is_a_volume(project: Project, location: Location) -> Iterator[Problem]:
    """The ACME location's folder is a named volume in nginx (certbot will write into it)."""
    root = location.block.find("root")
    folder = root[0].args[0].rstrip("/") if root else location.block.find("alias")[0].args[0]
    mounts = volume_mounts(project.services[project.nginx_service])
    if not any(is_named_volume(src) and target == folder.rstrip("/") for src, target in mounts):
        yield Problem(
            "stack.E060",
            (NGINX_TEMPLATE, COMPOSE),
            f"location {location.path} serves {folder}, which is no named volume's mount point "
            f"in service {project.nginx_service!r}; an ACME client could not write there",
        )


def check_certificate_mounts(project: Project) -> Iterator[Problem]:
    """stack.E061: nginx's certificate and key lie in a folder its service mounts, and the
    service that checks them first (deploy/tls_check.py) reads the same files, mounted alike, as
    does any service that writes them (deploy/acme.py: certbot's certificate)."""
    tree = project.nginx
    paths = [
        d.args[0]
        for name in ("ssl_certificate", "ssl_certificate_key")
        for d in tree.find(name) + [x for s in tree.find("server") for x in s.find(name)]
    ]
    if not paths:
        return
    nginx_mounts = volume_mounts(project.services[project.nginx_service])
    commands = {
        name: " ".join(checker.command_argv(service.get("command")))
        for name, service in project.services.items()
    }
    checkers = {name: s for name, s in project.services.items() if TLS_CHECK in commands[name]}
    readers = {
        name: (service, TLS_CHECK if name in checkers else ACME_SCRIPT)
        for name, service in project.services.items()
        if name in checkers or ACME_SCRIPT in commands[name]
    }
    if not checkers:
        yield Problem(
            "stack.E061",
            (COMPOSE, TLS_CHECK),
            f"no service runs {TLS_CHECK} before nginx starts: add it to the one-shot `setup` "
            "service's command",
        )
    for path in dict.fromkeys(paths):
        mount = next(
            ((s, t) for s, t in nginx_mounts if path.startswith(t.rstrip("/") + "/")), None
        )
        if mount is None:
            yield Problem(
                "stack.E061",
                (NGINX_TEMPLATE, COMPOSE),
                f"nginx reads {path}, but service {project.nginx_service!r} mounts no folder "
                "holding it: mount TLS_HOST_DIR there",
            )
            continue
        for name, (service, script) in readers.items():
            checked = {
                service_environment(project.env, service).get(key)
                for key in ("TLS_CERTIFICATE", "TLS_CERTIFICATE_KEY")
            }
            if path not in checked:
                yield Problem(
                    "stack.E061",
                    (NGINX_TEMPLATE, COMPOSE),
                    f"nginx reads {path}, but {script} in service {name!r} uses "
                    f"{sorted(map(str, checked))}: read both from TLS_CERTIFICATE(_KEY)",
                )
            elif mount not in volume_mounts(service):
                yield Problem(
                    "stack.E061",
                    (COMPOSE,),
                    f"nginx reads {path} from {mount[0]} mounted at {mount[1]}; service "
                    f"{name!r}, which {'checks' if script == TLS_CHECK else 'writes'} it, "
                    "must mount the same",
                )


RULES: tuple[Callable[[Project], Iterator[Problem]], ...] = (
    check_websocket_locations,
    check_pages_go_to_uwsgi,
    check_static_is_a_volume,
    check_static_volume_is_collected,
    check_static_url,
    check_nginx_template_is_mounted,
    check_services_read_env,
    check_uwsgi_variables_are_guarded,
    check_command_files_exist,
    check_server_apps_exist,
    check_healthchecks_probe_bound_ports,
    check_nginx_publishes_http_port,
    check_services_recover,
    check_uwsgi_stop_signal,
    check_servers_listen_beyond_loopback,
    check_uwsgi_buffer_holds_nginx_headers,
    check_connection_limits,
    check_containers_may_open_enough_files,
    check_acme_challenges_over_http,
    check_certificate_mounts,
)


def check(root: Path) -> list:
    """The shipped checker's problems with the project in `root`, then these rules'."""
    root = root.resolve()
    project = load_project(root)  # loads the project's checker too
    shipped = checker.check(root)
    if isinstance(project, Problem):
        return shipped or [project]
    return [*shipped, *(problem for rule in RULES for problem in rule(project))]


def main(argv: list[str]) -> int:
    """Check the project named on the command line (default: the current folder)."""
    root = Path(argv[1] if len(argv) > 1 else ".")
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"hooks/bake_checks.py: {len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"hooks/bake_checks.py: ok, the configs in {root} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
