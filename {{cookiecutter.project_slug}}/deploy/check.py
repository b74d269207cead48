"""Check that the stack's config files agree: compose, nginx, uWSGI, supervisor, Django and .env.

Usage: python deploy/check.py [PROJECT_DIR]      (default: the folder above deploy/)

Each file can be right on its own while the stack is broken between them: nginx sends /ws/ to a
port Daphne does not bind, uwsgi.ini reads a variable .env.example never defines. Every rule is
one `check_...` function that reads the written files and yields a Problem with a stable id
(`stack.E001`, like Django's system checks) and the files that disagree; RULES lists them all.
Prints one line per problem and exits 1, or prints "ok" and exits 0.

The post-generation hook, the project's tests and CI run this same file, so it uses the standard
library and PyYAML only.
"""

import ast
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from configparser import RawConfigParser
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

COMPOSE = "compose.yaml"
ENV_EXAMPLE = ".env.example"
ENV_FILE = ".env"
NGINX_TEMPLATE = "deploy/nginx/templates/default.conf.template"
NGINX_MAIN_TEMPLATE = "deploy/nginx/templates/nginx.conf.template"
UWSGI_INI = "deploy/uwsgi.ini"
SUPERVISORD_CONF = "deploy/supervisor/supervisord.conf"
SETTINGS = "config/settings.py"
ROUTING = "chat/routing.py"
REQUIRED_FILES = (COMPOSE, ENV_EXAMPLE, NGINX_TEMPLATE, SETTINGS, ROUTING)

# Where the official nginx image looks for templates to render with envsubst at start.
NGINX_TEMPLATE_DIR = "/etc/nginx/templates"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
REDIS_DEFAULT_PORT = 6379
# Variables compose defines itself for ${...} in compose.yaml (not read from .env).
COMPOSE_BUILTINS = {"COMPOSE_PROJECT_NAME"}
# Request headers: nginx's limit and default, what it adds to them for uWSGI, uWSGI's buffer.
NGINX_HEADER_LIMIT = "large_client_header_buffers"
NGINX_DEFAULT_HEADER_BUFFERS = ("4", "8k")
NGINX_UWSGI_PARAMS_BYTES = 1024
UWSGI_DEFAULT_BUFFER = 4096
UWSGI_MAX_PACKET = 65535
NGINX_DEFAULT_CONNECTIONS = 512
# Files a command names, recognised by their suffix.
FILE_SUFFIXES = (".py", ".ini", ".conf", ".sh")


@dataclass(frozen=True)
class Problem:
    """One disagreement: the rule's id, the files involved and what is wrong."""

    rule: str
    files: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        files = " <-> ".join(dict.fromkeys(self.files))  # each file once, in order
        return f"{self.rule} {files}: {self.message}"


# --- Reading the files ----------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a dotenv file (comments and blank lines skipped, quotes removed)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip().removeprefix("export ")
        if text and not text.startswith("#") and "=" in text:
            key, _, value = text.partition("=")
            values[key.strip()] = value.strip().strip("\"'")
    return values


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR:?error}, $VAR; $$ is a literal $.
COMPOSE_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>\w+)(?:(?P<op>:?[-+?])(?P<arg>[^}]*))?\}|(?P<bare>\w+)|(?P<dollar>\$))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand compose's variable references in `text` the way `docker compose` does."""

    def replace(match: re.Match) -> str:
        if match["dollar"]:
            return "$"
        value = env.get(match["braced"] or match["bare"])
        op, arg = match["op"] or "", match["arg"] or ""
        if op in (":-", ":?"):
            return value or arg
        if op in ("-", "?"):
            return arg if value is None else value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return "" if value is None else arg
        return value or ""

    return COMPOSE_VARIABLE.sub(replace, text)


def compose_variable_names(text: str) -> set[str]:
    """The variable names `text` refers to with compose's ${VAR} / $VAR syntax."""
    return {m["braced"] or m["bare"] for m in COMPOSE_VARIABLE.finditer(text) if not m["dollar"]}


def map_strings(node: object, function: Callable[[str], str]) -> object:
    """Apply `function` to every string value of parsed YAML (mapping keys stay as they are)."""
    if isinstance(node, str):
        return function(node)
    if isinstance(node, list):
        return [map_strings(item, function) for item in node]
    if isinstance(node, dict):
        return {key: map_strings(value, function) for key, value in node.items()}
    return node


def iter_strings(node: object) -> Iterator[str]:
    """Every string value in parsed YAML."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from iter_strings(value)


@dataclass
class Directive:
    """One nginx directive: `name args;` or `name args { children }`."""

    name: str
    args: list[str]
    children: list["Directive"] = field(default_factory=list)

    def find(self, name: str) -> list["Directive"]:
        """The direct children called `name`."""
        return [child for child in self.children if child.name == name]


# A comment, a quoted string, a brace or semicolon, or a word (which may contain ${VAR}).
NGINX_TOKEN = re.compile(
    r"""#[^\n]*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[{};]|(?:\$\{\w*\}|[^\s{};"'])+"""
)


def nginx_words(text: str) -> list[str]:
    """The tokens of an nginx config, comments dropped."""
    return [token for token in NGINX_TOKEN.findall(text) if not token.startswith("#")]


def parse_nginx(text: str) -> Directive:
    """Parse nginx config text into a tree whose root holds the top-level directives."""
    root = Directive("", [])
    stack, words = [root], []
    for part in nginx_words(text):
        if part in ("{", ";"):
            directive = Directive(words[0] if words else "", words[1:])
            stack[-1].children.append(directive)
            if part == "{":
                stack.append(directive)
            words = []
        elif part == "}":
            if len(stack) > 1:
                stack.pop()
            words = []
        else:
            words.append(part[1:-1] if part[0] in "\"'" else part)
    return root


def render_nginx_template(text: str, env: dict[str, str]) -> str:
    """Do what the nginx image's envsubst does: replace $NAME / ${NAME} for names in `env`."""

    def replace(match: re.Match) -> str:
        name = match[1] or match[2]
        return env.get(name, match[0])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, text)


def read_uwsgi_ini(path: Path) -> list[tuple[str, str]]:
    """The `key = value` lines of uwsgi.ini's [uwsgi] section, in order (keys may repeat)."""
    options, in_section = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text[0] in ";#":
            continue
        if text.startswith("["):
            in_section = text == "[uwsgi]"
        elif in_section and "=" in text:
            key, _, value = text.partition("=")
            options.append((key.strip(), value.strip()))
    return options


def read_supervisord_conf(path: Path) -> RawConfigParser:
    """supervisord.conf as sections of options, with %(...)s left unexpanded."""
    parser = RawConfigParser(
        comment_prefixes=(";", "#"), inline_comment_prefixes=(";",), strict=False
    )
    parser.read(path, encoding="utf-8")
    return parser


def expand_supervisor(value: str, here: Path, env: dict[str, str]) -> str:
    """Expand supervisor's %(here)s, %(ENV_X)s and %(process_num)d; leave the others."""
    names = {"here": str(here), "process_num": "0"}

    def replace(match: re.Match) -> str:
        name = match[1]
        if name.startswith("ENV_"):
            return env.get(name.removeprefix("ENV_"), match[0])
        return names.get(name, match[0])

    return re.sub(r"%\((\w+)\)[sd]", replace, value)


def expand_uwsgi(value: str, ini: Path, env: dict[str, str]) -> str:
    """Expand uWSGI's $(VAR) and %d (this file's folder, with a trailing slash)."""
    value = re.sub(r"\$\((\w+)\)", lambda match: env.get(match[1], match[0]), value)
    return value.replace("%d", f"{ini.parent}/")


def command_argv(command: object) -> list[str]:
    """A compose or supervisor command as a list of words; `sh -c "..."` is split once more."""
    if isinstance(command, str):
        argv = shlex.split(command)
    else:
        argv = [str(word) for word in command or []]
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        return shlex.split(argv[2])
    return argv


def healthcheck_argv(service: dict) -> list[str]:
    """A compose healthcheck's test as words ([] when there is none)."""
    test = (service.get("healthcheck") or {}).get("test") or []
    if isinstance(test, str):
        return shlex.split(test)
    if test and test[0] == "CMD-SHELL":
        return shlex.split(" ".join(test[1:]))
    return [str(word) for word in test if word != "CMD"]


def option(argv: list[str], *names: str) -> str | None:
    """The value of the first of `names` in argv, written `--name value` or `--name=value`."""
    for index, word in enumerate(argv):
        for name in names:
            if word == name and index + 1 < len(argv):
                return argv[index + 1]
            if word.startswith(name + "="):
                return word.removeprefix(name + "=")
    return None


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
    """Everything the rules read, loaded once."""

    root: Path
    env_example: dict[str, str]
    env: dict[str, str]  # what compose reads: .env.example overridden by .env, if present
    env_file: dict[str, str] | None  # .env itself (None when absent, as in CI)
    compose_raw: dict  # compose.yaml as written
    services: dict[str, dict]  # compose services, with ${VAR} expanded
    nginx_service: str
    nginx_template: str  # as written
    nginx_main_template: str | None  # nginx.conf.template as written (None: the image's own)
    nginx: Directive  # as rendered from the nginx service's environment
    nginx_main: Directive | None  # nginx.conf.template, rendered (None: the image's own)
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


def nginx_base_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    """What nginx's envsubst sees before `environment:`: .env's values if it reads .env."""
    return dict(env) if ENV_FILE in env_files(service) else {}


def uwsgi_server(
    root: Path, service: str, argv: list[str], base: Path, launch: tuple[str, str], env: dict
) -> Server:
    """The uWSGI that `uwsgi --ini FILE` starts; `base` is the folder FILE is relative to."""
    launcher, stop_signal = launch
    ini_arg = option(argv, "--ini") or ""
    ini = (base / ini_arg).resolve()
    config = str(ini.relative_to(root)) if ini.is_relative_to(root) else str(ini)
    if not ini_arg or not ini.is_file():
        return Server("uwsgi", service, config, launcher, None, None, root, stop_signal)
    options = [(key, expand_uwsgi(value, ini, env)) for key, value in read_uwsgi_ini(ini)]
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
    if option(argv, "--fd") is not None:
        address = split_address(fd_socket)
    else:  # Daphne's defaults: 127.0.0.1:8000
        host = option(argv, "--bind", "-b") or "127.0.0.1"
        port = option(argv, "--port", "-p") or "8000"
        address = (host, int(port)) if port.isdigit() else None
    binds = None if address is None else (address,)
    apps = [word for word in argv[1:] if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", word)]
    app = apps[-1] if apps else None
    return Server("daphne", service, launcher, launcher, binds, app, directory, stop_signal)


def supervised_servers(
    root: Path, service: str, conf: Path, env: dict[str, str]
) -> Iterator[Server]:
    """The uWSGI and Daphne programs a supervisord.conf starts."""
    parser = read_supervisord_conf(conf)
    launcher = str(conf.relative_to(root))
    for section in parser.sections():
        kind, _, _ = section.partition(":")
        if kind not in ("program", "fcgi-program"):
            continue

        def get(key: str, default: str = "", section: str = section) -> str:
            return expand_supervisor(parser.get(section, key, fallback=default), conf.parent, env)

        argv = command_argv(get("command"))
        directory = Path(get("directory") or root).resolve()
        launch = (launcher, signal_name(get("stopsignal", "TERM")))
        program = Path(argv[0]).name if argv else ""
        if program == "uwsgi":
            yield uwsgi_server(root, service, argv, directory, launch, env)
        elif program == "daphne":
            yield daphne_server(service, argv, directory, launch, get("socket"))


def find_servers(project: Project) -> tuple[list[Server], set[str]]:
    """Every uWSGI and Daphne the compose services run, and the services we cannot see into."""
    servers, opaque = [], set()
    for name, service in project.services.items():
        argv = command_argv(service.get("command"))
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
            conf = project.root / (option(argv, "-c", "--configuration") or "-")
            if conf.is_file():
                servers.extend(supervised_servers(project.root, name, conf, env))
            else:
                opaque.add(name)
    return servers, opaque


def find_nginx_service(services: dict[str, dict]) -> str | None:
    """The compose service running the nginx image."""
    for name, service in services.items():
        image = str(service.get("image", ""))
        if image.split("/")[-1].startswith("nginx"):
            return name
    return None


def load_project(root: Path) -> Project | Problem:
    """Read every file the rules need, or say which one is missing or unreadable."""
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            return Problem("stack.E000", (name,), "missing; the checker needs it")
    for name in (SETTINGS, ROUTING):
        try:
            ast.parse((root / name).read_text(encoding="utf-8"))
        except SyntaxError as error:
            return Problem("stack.E000", (name,), f"is not valid Python: {error}")
    try:
        compose_raw = yaml.safe_load((root / COMPOSE).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        return Problem(
            "stack.E000", (COMPOSE,), f"is not valid YAML: {' '.join(str(error).split())}"
        )
    env_example = read_env_file(root / ENV_EXAMPLE)
    env_file = read_env_file(root / ENV_FILE) if (root / ENV_FILE).is_file() else None
    env = {**env_example, **(env_file or {})}
    compose = map_strings(compose_raw, lambda text: interpolate(text, env))
    services = compose.get("services") or {}
    nginx_service = find_nginx_service(services)
    if nginx_service is None:
        return Problem("stack.E000", (COMPOSE,), "no service runs an nginx image")
    nginx_env = service_environment(
        nginx_base_env(services[nginx_service], env), services[nginx_service]
    )
    template = (root / NGINX_TEMPLATE).read_text(encoding="utf-8")
    main_path = root / NGINX_MAIN_TEMPLATE
    main_template = main_path.read_text(encoding="utf-8") if main_path.is_file() else None
    project = Project(
        root=root,
        env_example=env_example,
        env=env,
        env_file=env_file,
        compose_raw=compose_raw,
        services=services,
        nginx_service=nginx_service,
        nginx_template=template,
        nginx_main_template=main_template,
        nginx=parse_nginx(render_nginx_template(template, nginx_env)),
        nginx_main=None
        if main_template is None
        else parse_nginx(render_nginx_template(main_template, nginx_env)),
        servers=[],
        opaque_services=set(),
    )
    project.servers, project.opaque_services = find_servers(project)
    return project


# --- What nginx does ------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """An nginx `location` block of a server."""

    modifier: str  # "", "=", "^~", "~" or "~*"
    path: str
    block: Directive

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


def nginx_locations(project: Project) -> Iterator[tuple[Directive, Location]]:
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


def best_location(project: Project, server: Directive, path: str) -> Location | None:
    """The prefix location nginx picks for `path` in `server` (longest prefix; no regexes)."""
    candidates = [
        location
        for owner, location in nginx_locations(project)
        if owner is server
        and location.modifier in ("", "^~", "=")
        and (path == location.path if location.modifier == "=" else path.startswith(location.path))
    ]
    return max(candidates, key=lambda location: len(location.path), default=None)


def proxying_servers(project: Project) -> list[Directive]:
    """The nginx servers that hand any request on (not the catch-all default server)."""
    return [
        server
        for server in project.nginx.find("server")
        if any(owner is server and loc.passes_to() for owner, loc in nginx_locations(project))
    ]


# --- What the rest of the project says ------------------------------------------------------


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


def settings_env_names(root: Path) -> set[str]:
    """Variables settings.py reads: os.environ.get("X"), os.environ["X"], os.getenv, env_*("X")."""
    names = set()
    for node in ast.walk(settings_tree(root)):
        key = None
        if isinstance(node, ast.Call) and node.args:
            function = ast.unparse(node.func)
            if function in ("os.environ.get", "os.getenv") or function.startswith("env_"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


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
    port = option(command_argv(service.get("command")), "--port")
    return int(port) if port and port.isdigit() else REDIS_DEFAULT_PORT


def is_redis(service: dict) -> bool:
    """Does this compose service run Redis?"""
    image = str(service.get("image", "")).split("/")[-1]
    argv = command_argv(service.get("command"))
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


# --- The rules ------------------------------------------------------------------------------


def check_upstream_hosts_are_services(project: Project) -> Iterator[Problem]:
    """stack.E001: every host nginx hands requests to is a compose service."""
    services = sorted(project.services)
    for kind, _, _ in PASS_KINDS:
        for host, port in sorted(nginx_targets(project, kind)):
            if host not in project.services:
                yield Problem(
                    "stack.E001",
                    (NGINX_TEMPLATE, COMPOSE),
                    f"nginx sends requests to {host}:{port}, but {host!r} is no compose service "
                    f"(services: {', '.join(services)})",
                )


def check_targeted_ports_are_bound(project: Project) -> Iterator[Problem]:
    """stack.E002: every port nginx or a healthcheck targets is one the server there binds."""
    yield from upstream_port_problems(project)
    yield from healthcheck_port_problems(project)


def upstream_port_problems(project: Project) -> Iterator[Problem]:
    """nginx upstreams whose port the uWSGI / Daphne on that host does not bind."""
    for kind, server_kind, directive in PASS_KINDS:
        for host, port in sorted(nginx_targets(project, kind)):
            servers = [s for s in project.servers if s.service == host and s.kind == server_kind]
            if not servers or any(server.binds is None for server in servers):
                continue  # no such server there (stack.E003), or its config is missing (E020)
            bound = sorted({p for server in servers for _, p in server.binds})
            if port not in bound:
                yield Problem(
                    "stack.E002",
                    (NGINX_TEMPLATE, servers[0].config),
                    f"nginx {directive} targets {host}:{port}, but {kind_name(server_kind)} in "
                    f"service {host!r} binds port(s) {', '.join(map(str, bound)) or 'none'}",
                )


def healthcheck_port_problems(project: Project) -> Iterator[Problem]:
    """Healthchecks that probe a port their service does not bind (deploy/healthcheck.py, nginx)."""
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
            if port not in bound:
                yield Problem(
                    "stack.E002",
                    (COMPOSE, config),
                    f"service {name!r}: its healthcheck probes port {port}, which it does not bind "
                    f"({', '.join(map(str, sorted(bound)))})",
                )


def check_upstream_hosts_run_servers(project: Project) -> Iterator[Problem]:
    """stack.E003: the host pages go to runs uWSGI; the host WebSockets go to runs Daphne."""
    for kind, server_kind, directive in PASS_KINDS:
        for host, port in sorted(nginx_targets(project, kind)):
            if host not in project.services or host in project.opaque_services:
                continue  # stack.E001 / E020 say why
            if not any(s.service == host and s.kind == server_kind for s in project.servers):
                running = sorted({s.service for s in project.servers if s.kind == server_kind})
                yield Problem(
                    "stack.E003",
                    (NGINX_TEMPLATE, COMPOSE),
                    f"nginx {directive} targets {host}:{port}, but service {host!r} does not run "
                    f"{kind_name(server_kind)} (it runs in: {', '.join(running) or 'no service'})",
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
    """(location, folder on disk) for each location nginx serves files from with alias / root."""
    for _, location in nginx_locations(project):
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


def braced(name: str) -> str:
    """${NAME}, for messages."""
    return "${" + name + "}"


def check_nginx_template_variables(project: Project) -> Iterator[Problem]:
    """stack.E010: every ${VAR} in the nginx template is set in the nginx service's environment."""
    service = project.services[project.nginx_service]
    known = set(service_environment(nginx_base_env(service, project.env), service))
    templates = {
        NGINX_TEMPLATE: project.nginx_template,
        NGINX_MAIN_TEMPLATE: project.nginx_main_template,
    }
    for file, text in templates.items():
        used = {
            name for word in nginx_words(text or "") for name in re.findall(r"\$\{(\w+)\}", word)
        }
        for name in sorted(used - known):
            yield Problem(
                "stack.E010",
                (file, COMPOSE),
                f"{braced(name)} is not set in service {project.nginx_service!r}'s environment, "
                "so nginx keeps it as literal text",
            )


def undefined(project: Project, names: set[str]) -> list[str]:
    """The names .env.example does not define, sorted."""
    return sorted(names - set(project.env_example))


def check_compose_variables(project: Project) -> Iterator[Problem]:
    """stack.E011: every ${VAR} in compose.yaml is defined in .env.example."""
    names = {n for text in iter_strings(project.compose_raw) for n in compose_variable_names(text)}
    for name in undefined(project, names - COMPOSE_BUILTINS):
        yield Problem(
            "stack.E011",
            (COMPOSE, ENV_EXAMPLE),
            f"{braced(name)} is used but not defined (compose would substitute an empty string)",
        )


def check_uwsgi_variables(project: Project) -> Iterator[Problem]:
    """stack.E012: every $(VAR) in uwsgi.ini is defined in .env.example and has a guard."""
    path = project.root / UWSGI_INI
    if not path.is_file():
        return
    options = read_uwsgi_ini(path)
    names = {name for _, value in options for name in re.findall(r"\$\((\w+)\)", value)}
    for name in undefined(project, names):
        yield Problem("stack.E012", (UWSGI_INI, ENV_EXAMPLE), f"$({name}) is used but not defined")
    guarded = {value for key, value in options if key == "if-not-env"}
    for name in sorted(names - guarded):
        yield Problem(
            "stack.E012",
            (UWSGI_INI, ENV_EXAMPLE),
            f"$({name}) has no `if-not-env = {name}` guard; unset, uWSGI uses the literal text",
        )


def check_supervisor_variables(project: Project) -> Iterator[Problem]:
    """stack.E013: every %(ENV_VAR)s in supervisord.conf is defined in .env.example."""
    path = project.root / SUPERVISORD_CONF
    if not path.is_file():
        return
    parser = read_supervisord_conf(path)
    values = [value for section in parser.sections() for _, value in parser.items(section)]
    names = {name for value in values for name in re.findall(r"%\(ENV_(\w+)\)s", value)}
    for name in undefined(project, names):
        yield Problem(
            "stack.E013",
            (SUPERVISORD_CONF, ENV_EXAMPLE),
            f"%(ENV_{name})s is used but not defined (supervisord refuses to start)",
        )


def check_settings_variables(project: Project) -> Iterator[Problem]:
    """stack.E014: every environment variable settings.py reads is defined in .env.example."""
    for name in undefined(project, settings_env_names(project.root)):
        yield Problem("stack.E014", (SETTINGS, ENV_EXAMPLE), f"{name} is read but not defined")


def check_services_read_env(project: Project) -> Iterator[Problem]:
    """stack.E015: every service running the project's image reads .env (env_file: .env)."""
    for name, service in built_services(project).items():
        if ENV_FILE not in env_files(service):
            yield Problem(
                "stack.E015",
                (COMPOSE, ENV_FILE),
                f"service {name!r} runs the project but has no `env_file: {ENV_FILE}`",
            )


def check_env_file_is_complete(project: Project) -> Iterator[Problem]:
    """stack.E016: .env (when present) defines every variable .env.example documents."""
    if project.env_file is None:
        return
    for name in sorted(set(project.env_example) - set(project.env_file)):
        yield Problem(
            "stack.E016",
            (ENV_FILE, ENV_EXAMPLE),
            f"{name} is missing from {ENV_FILE}; copy its line from {ENV_EXAMPLE}",
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
        for argv in (command_argv(service.get("command")), healthcheck_argv(service)):
            if service is not project.services[project.nginx_service]:
                for path in named_files(argv, project.root):
                    yield COMPOSE, path
    conf = project.root / SUPERVISORD_CONF
    if conf.is_file():
        parser = read_supervisord_conf(conf)
        for section in parser.sections():
            command = expand_supervisor(
                parser.get(section, "command", fallback=""), conf.parent, project.env
            )
            directory = expand_supervisor(
                parser.get(section, "directory", fallback=""), conf.parent, project.env
            )
            for path in named_files(command_argv(command), Path(directory or project.root)):
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


def check_redis_url(project: Project) -> Iterator[Problem]:
    """stack.E030: REDIS_URL points at the compose Redis service and the port it listens on."""
    url = project.env.get("REDIS_URL")
    if not url:
        return  # settings.py falls back to the in-memory layer; stack.E014 covers a missing name
    parts = urlsplit(url)
    service = project.services.get(parts.hostname or "")
    redis = sorted(name for name, svc in project.services.items() if is_redis(svc))
    if service is None or not is_redis(service):
        yield Problem(
            "stack.E030",
            (project.env_source("REDIS_URL"), COMPOSE),
            f"REDIS_URL={url} names host {parts.hostname!r}, which is no Redis service "
            f"(Redis runs in: {', '.join(redis) or 'no service'})",
        )
    elif (parts.port or REDIS_DEFAULT_PORT) != redis_port(service):
        yield Problem(
            "stack.E030",
            (project.env_source("REDIS_URL"), COMPOSE),
            f"REDIS_URL={url} uses port {parts.port}, but service {parts.hostname!r} listens "
            f"on {redis_port(service)}",
        )


def check_only_nginx_is_published(project: Project) -> Iterator[Problem]:
    """stack.E040: no service but nginx publishes a port (least of all Redis: no password)."""
    for name, service in project.services.items():
        if name != project.nginx_service and service.get("ports"):
            why = " (Redis has no password)" if is_redis(service) else ""
            yield Problem(
                "stack.E040",
                (COMPOSE, NGINX_TEMPLATE),
                f"service {name!r} publishes {service['ports']}{why}; only nginx faces the host",
            )


def check_nginx_publishes_http_port(project: Project) -> Iterator[Problem]:
    """stack.E041: nginx publishes exactly HTTP_PORT, onto a port its config listens on."""
    http_port = project.env.get("HTTP_PORT", "")
    listen = sorted({str(port) for _, port in nginx_listens(project)})
    ports = published_ports(project.services[project.nginx_service])
    for host, container in ports:
        if host != http_port or container not in listen:
            yield Problem(
                "stack.E041",
                (COMPOSE, NGINX_TEMPLATE),
                f"nginx publishes {host or '(any)'}:{container}; it must publish only "
                f"HTTP_PORT={http_port} onto a port it listens on ({', '.join(listen)})",
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


def all_directives(node: Directive) -> Iterator[Directive]:
    """Every directive below `node`, depth first."""
    for child in node.children:
        yield child
        yield from all_directives(child)


def check_uwsgi_buffer_holds_nginx_headers(project: Project) -> Iterator[Problem]:
    """stack.E053: uWSGI's buffer-size holds every request header set nginx accepts."""
    path = project.root / UWSGI_INI
    if not path.is_file():
        return
    sizes = [value for key, value in read_uwsgi_ini(path) if key in ("buffer-size", "b")]
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
    """stack.E054: twice nginx's worker_connections fit its worker_rlimit_nofile, and nginx and
    every server's container may open that many files (each WebSocket holds two in nginx, one in
    Daphne)."""
    if project.nginx_main is None:
        yield Problem(
            "stack.E054",
            (NGINX_MAIN_TEMPLATE, COMPOSE),
            "missing: nginx would run the image's nginx.conf, 1024 connections per worker "
            "(about 1,000 WebSockets on 2 cores)",
        )
        return
    events = project.nginx_main.find("events")
    found = [d.args[0] for e in events for d in e.find("worker_connections") if d.args]
    connections = int(found[-1]) if found and found[-1].isdigit() else NGINX_DEFAULT_CONNECTIONS
    found = [d.args[0] for d in project.nginx_main.find("worker_rlimit_nofile") if d.args]
    rlimit = int(found[-1]) if found and found[-1].isdigit() else None
    # Twice: a connection may hold a file too (a static file, a buffer spilled to disk).
    if rlimit is None or rlimit < 2 * connections:
        yield Problem(
            "stack.E054",
            (NGINX_MAIN_TEMPLATE, ENV_EXAMPLE),
            f"nginx's worker_rlimit_nofile ({rlimit or 'unset'}) must be at least twice its "
            f"worker_connections ({connections}): set MAX_OPEN_FILES >= 2 x "
            "NGINX_WORKER_CONNECTIONS",
        )
        return
    services = {project.nginx_service} | {server.service for server in project.servers}
    for name in sorted(services):
        limit = nofile_limit(project.services[name])
        if limit is None or limit < rlimit:
            yield Problem(
                "stack.E054",
                (COMPOSE, NGINX_MAIN_TEMPLATE),
                f"service {name!r} may open {limit or 'Docker default'} files, fewer than "
                f"nginx's worker_rlimit_nofile ({rlimit}): give it `ulimits: nofile` of "
                "${MAX_OPEN_FILES}",
            )


RULES: tuple[Callable[[Project], Iterator[Problem]], ...] = (
    check_upstream_hosts_are_services,
    check_targeted_ports_are_bound,
    check_upstream_hosts_run_servers,
    check_websocket_locations,
    check_pages_go_to_uwsgi,
    check_static_is_a_volume,
    check_static_volume_is_collected,
    check_static_url,
    check_nginx_template_is_mounted,
    check_nginx_template_variables,
    check_compose_variables,
    check_uwsgi_variables,
    check_supervisor_variables,
    check_settings_variables,
    check_services_read_env,
    check_env_file_is_complete,
    check_command_files_exist,
    check_server_apps_exist,
    check_redis_url,
    check_only_nginx_is_published,
    check_nginx_publishes_http_port,
    check_services_recover,
    check_uwsgi_stop_signal,
    check_servers_listen_beyond_loopback,
    check_uwsgi_buffer_holds_nginx_headers,
    check_connection_limits,
)


def check(root: Path) -> list[Problem]:
    """Run every rule on the project in `root`; return what they found."""
    project = load_project(root.resolve())
    if isinstance(project, Problem):
        return [project]
    return [problem for rule in RULES for problem in rule(project)]


def main(argv: list[str]) -> int:
    """Check the project named on the command line (default: the one holding this file)."""
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"deploy/check.py: {len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"deploy/check.py: ok, the configs in {root} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
