"""Check that the stack's config files agree: compose, nginx, uWSGI, supervisor, Django and .env.

Usage: python deploy/check.py [PROJECT_DIR]      (default: the folder above deploy/)

Prints one line per problem (a stable id like Django's checks, the files that disagree, the fix)
and exits 1, or "ok" and exits 0. It keeps what edits of this project most often break. AGREEMENTS:
nginx's uwsgi_pass / proxy_pass reach a compose service running uWSGI / Daphne on that port
(E001-E003), REDIS_URL the Redis service (E030). ENV_NAMES: every variable the nginx templates,
compose.yaml, uwsgi.ini, supervisord.conf and settings.py read is defined (E010-E014), .env has
all of .env.example (E016). Only nginx publishes a port (E040). The template checked the rest at
bake time. settings.py's variables are found whatever reads them: UPPER_CASE string literals
with an underscore (or any, when the reader's name says "env") passed first to a call or used
as a subscript key. Standard library and PyYAML only: the bake runs it in cookiecutter's Python.
"""

import ast
import os
import re
import shlex
import sys
from configparser import RawConfigParser
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import yaml

COMPOSE, ENV_EXAMPLE, ENV_FILE = "compose.yaml", ".env.example", ".env"
SETTINGS = "config/settings.py"
NGINX_TEMPLATE = "deploy/nginx/templates/default.conf.template"
NGINX_MAIN_TEMPLATE = "deploy/nginx/templates/nginx.conf.template"
UWSGI_INI, SUPERVISORD_CONF = "deploy/uwsgi.ini", "deploy/supervisor/supervisord.conf"
REDIS_PORT = 6379


@dataclass(frozen=True)
class Problem:
    """One disagreement: the rule's id, the files involved and what is wrong."""

    rule: str
    files: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.rule} {' <-> '.join(dict.fromkeys(self.files))}: {self.message}"


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file's KEY=VALUE lines (`#` comments, `export ` and surrounding quotes dropped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, equals, value = line.strip().removeprefix("export ").partition("=")
        if equals and not key.startswith("#"):
            value = value.strip()
            values[key.strip()] = value[1:-1] if re.fullmatch(r"(\"|').*\1", value) else value
    return values


# ${X}, ${X:-default}, ${X-default}, ${X:?error}, ${X?error}, ${X:+alt}, ${X+alt}, $X; $$ is a $.
COMPOSE_VARIABLE = re.compile(r"\$(?:\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+)|(\$))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand compose's variables in `text` as `docker compose` does (${X?e} unset: ValueError)."""

    def replace(match: re.Match) -> str:
        braced, op, arg, bare, dollar = match.groups()
        value = env.get(braced or bare)
        is_set = bool(value) if (op or "").startswith(":") else value is not None
        if op in ("?", ":?") and not is_set:
            raise ValueError(f"required variable {braced} is missing a value: {arg}")
        if op in ("-", ":-", "+", ":+"):
            return (value if is_set else arg) if "-" in op else (arg if is_set else "")
        return "$" if dollar else value or ""

    return COMPOSE_VARIABLE.sub(replace, text)


def load_compose(root: Path, env: dict[str, str]) -> dict:
    """compose.yaml parsed, with every string in it interpolated from `env` (keys as written)."""

    def expand(node: object) -> object:
        if isinstance(node, list):
            return [expand(item) for item in node]
        if isinstance(node, dict):
            return {key: expand(value) for key, value in node.items()}
        return interpolate(node, env) if isinstance(node, str) else node

    return expand(yaml.safe_load((root / COMPOSE).read_text(encoding="utf-8")) or {})


@dataclass
class Directive:
    """One nginx directive: `name args;` or `name args { children }`."""

    name: str
    args: list[str]
    children: list["Directive"] = field(default_factory=list)

    def find(self, path: str) -> list["Directive"]:
        """The directives at `path` below this one: "server/listen" looks two levels down."""
        first, _, rest = path.partition("/")
        found = [child for child in self.children if child.name == first]
        return [d for child in found for d in child.find(rest)] if rest else found


def read_nginx(text: str, env: dict[str, str]) -> Directive:
    """An nginx config template as a tree, ${NAME} filled from `env` as the nginx image does."""
    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], m[0]), text)
    stack, words = [Directive("", [])], []
    # A comment, a quoted string, a brace or semicolon, or a word (which may hold ${VAR}).
    for word in re.findall(r"""#.*|"[^"]*"|'[^']*'|[{};]|(?:\$\{\w*\}|[^\s{};"'])+""", text):
        if word in ("{", ";"):
            stack[-1].children.append(Directive(words[0] if words else "", words[1:]))
            stack += [stack[-1].children[-1]] if word == "{" else []
            words = []
        elif word == "}":
            stack, words = stack[:-1] or stack, []
        elif not word.startswith("#"):
            words.append(word[1:-1] if word[0] in "\"'" else word)
    return stack[0]


def read_uwsgi_ini(path: Path) -> list[tuple[str, str]]:
    """uwsgi.ini's `key = value` lines in order (keys may repeat); comments and [uwsgi] dropped."""
    return re.findall(r"(?m)^[ \t]*([^\s;#\[=][^=\n]*?)[ \t]*=[ \t]*(.*?)[ \t]*$", path.read_text())


def read_supervisord_conf(path: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """supervisord.conf's sections, with %(here)s and %(ENV_X)s expanded from `env`."""
    parser = RawConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=(";",))
    parser.read(path, encoding="utf-8")
    names = {"here": str(path.parent), **{f"ENV_{key}": value for key, value in env.items()}}
    expand = partial(re.sub, r"%\((\w+)\)s", lambda m: names.get(m[1], m[0]))
    return {name: {k: expand(v) for k, v in parser.items(name)} for name in parser.sections()}


def command_argv(command: object) -> list[str]:
    """A compose or supervisor command as a list of words; `sh -c "..."` is split once more."""
    argv = shlex.split(command) if isinstance(command, str) else [str(w) for w in command or []]
    shell = len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c"
    return shlex.split(argv[2]) if shell else argv


def option(argv: list[str], *names: str) -> str | None:
    """The value of the first of `names` in argv, written `--name value` or `--name=value`."""
    for word, following in zip(argv, [*argv[1:], None], strict=False):
        for name in names:
            if word == name or word.startswith(name + "="):
                return following if word == name else word.removeprefix(name + "=")
    return None


def port_of(address: str) -> int | None:
    """The port of `host:port`, `tcp://host:port` or `:port` (None: no TCP address)."""
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def listens(root: Path, argv: list[str], launch: dict, env: dict) -> tuple[str, str, int | None]:
    """(server kind, the file that says where it listens, its port) of what `argv` starts."""
    program = Path(argv[0]).name if argv else ""
    if program == "uwsgi":  # a missing uwsgi.ini: the bake's checks name it
        ini = root / (option(argv, "--ini") or "-")
        options = read_uwsgi_ini(ini) if ini.is_file() else []
        socket = next((value for key, value in options if key == "socket"), "")
        socket = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), socket)
        return "uWSGI", os.path.relpath(ini, root), port_of(socket)
    if program == "daphne" and option(argv, "--fd"):  # the socket supervisord opens for it
        return "Daphne", SUPERVISORD_CONF, port_of(launch.get("socket", ""))
    if program == "daphne":
        return "Daphne", COMPOSE, port_of(":" + (option(argv, "--port", "-p") or "8000"))
    if program == "redis-server" or (not argv and "redis" in str(launch.get("image"))):
        return "Redis", COMPOSE, port_of(":" + (option(argv, "--port") or str(REDIS_PORT)))
    return "", "", None


@dataclass
class Project:
    """Everything the rules read, loaded once; servers: (service, kind) -> (file, its ports)."""

    root: Path
    env_example: dict[str, str]
    env_file: dict[str, str] | None  # .env itself (None when absent, as in CI)
    env: dict[str, str]  # what compose reads: .env.example overridden by .env
    services: dict[str, dict]  # compose.yaml's services, interpolated
    nginx_service: str
    nginx_env: dict[str, str]  # what the nginx image renders its templates with
    nginx: Directive  # default.conf.template, rendered
    servers: dict[tuple[str, str], tuple[str, set]] = field(default_factory=dict)


def load_project(root: Path) -> Project | Problem:
    """Read every file the rules need, or say which one is missing or unreadable."""
    for file in (COMPOSE, ENV_EXAMPLE, NGINX_TEMPLATE, SETTINGS):
        if not (root / file).is_file():
            return Problem("stack.E000", (file,), "missing; the checker needs it")
    env_example = read_env_file(root / ENV_EXAMPLE)
    env_file = read_env_file(root / ENV_FILE) if (root / ENV_FILE).is_file() else None
    env = {**env_example, **(env_file or {})}
    try:
        ast.parse((root / SETTINGS).read_text(encoding="utf-8"))
        services = load_compose(root, env).get("services") or {}
    except (SyntaxError, yaml.YAMLError) as error:
        file = SETTINGS if isinstance(error, SyntaxError) else COMPOSE
        return Problem("stack.E000", (file,), f"cannot be read: {' '.join(str(error).split())}")
    except ValueError as error:
        return Problem("stack.E011", (COMPOSE, ENV_EXAMPLE), f"{error}; define it in {ENV_EXAMPLE}")
    environments = {}  # what each service's containers see: .env if it reads it, then environment:
    for name, service in services.items():
        own = service.get("environment") or {}
        own = dict(item.partition("=")[::2] for item in own) if isinstance(own, list) else own
        reads_env = re.search(r"(^|[\s/'\[])\.env\b(?!\.)", str(service.get("env_file") or ""))
        environments[name] = {**(env if reads_env else {}), **{k: str(v) for k, v in own.items()}}
    nginx = next((name for name, svc in services.items() if "nginx" in str(svc.get("image"))), "")
    if not nginx:
        return Problem("stack.E000", (COMPOSE,), "no service runs an nginx image")
    site = read_nginx((root / NGINX_TEMPLATE).read_text(encoding="utf-8"), environments[nginx])
    project = Project(root, env_example, env_file, env, services, nginx, environments[nginx], site)
    for name, service in services.items():
        argv, service_env = command_argv(service.get("command")), {**env, **environments[name]}
        conf, programs = root / (option(argv, "-c", "--configuration") or "-"), [(argv, service)]
        if argv and Path(argv[0]).name == "supervisord":  # a missing conf: the bake's checks say so
            sections = read_supervisord_conf(conf, service_env) if conf.is_file() else {}
            programs = [(command_argv(s.get("command")), s) for s in sections.values()]
        for argv, launch in programs:
            kind, file, port = listens(root, argv, launch, service_env)
            project.servers.setdefault((name, kind), (file, set()))[1].add(port)
    return project


# Who sends requests where, which server must listen there, and the rules fired when that host is
# no compose service, when it runs no such server, and when that server listens elsewhere.
AGREEMENTS = (
    ("nginx uwsgi_pass", "uWSGI", ("stack.E001", "stack.E003", "stack.E002")),
    ("nginx proxy_pass", "Daphne", ("stack.E001", "stack.E003", "stack.E002")),
    ("REDIS_URL", "Redis", ("stack.E030", "stack.E030", "stack.E030")),
)


def targets(project: Project, who: str) -> list[tuple[str, int, str]]:
    """(host, port, the file saying so) that an AGREEMENTS row's sender sends requests to."""
    if not who.startswith("nginx"):
        url = urlsplit(project.env.get(who, ""))
        source = ENV_FILE if project.env_file else ENV_EXAMPLE
        return [(url.hostname, url.port or REDIS_PORT, source)] if url.hostname else []
    found = []
    for location in project.nginx.find("server/location"):  # the template names them by `set`
        values = {s.args[0]: s.args[1] for s in location.find("set") if len(s.args) == 2}
        for target in location.find(who.removeprefix("nginx ")):
            address = re.sub(r"\$\w+", lambda m, v=values: v.get(m[0], m[0]), target.args[0])
            address = re.sub(r"^\w+://", "", address).split("/")[0]
            found.append((address.partition(":")[0], port_of(address) or 80, NGINX_TEMPLATE))
    return found


def check_agreements(project: Project):
    """stack.E001-E003, E030: each AGREEMENTS row's sender reaches a server listening there."""
    for who, kind, (no_service, no_server, no_port) in AGREEMENTS:
        running = sorted(service for service, runs in project.servers if runs == kind)
        fix = f"point it at the service that runs {kind} ({', '.join(running) or 'none does'})"
        for host, port, file in targets(project, who):
            listen_file, ports = project.servers.get((host, kind), (COMPOSE, set()))
            if host not in project.services:
                rule, why = no_service, f"{host!r} is no compose service; {fix}"
            elif not ports:
                rule, why = no_server, f"service {host!r} runs no {kind}; {fix}"
            elif None in ports or port in ports:
                continue
            else:
                bound = ", ".join(map(str, sorted(ports)))
                rule, why = no_port, f"{kind} in {host!r} listens on {bound}; make them agree"
            message = f"{who} sends requests to {host}:{port}, but {why}"
            yield Problem(rule, (file, listen_file), message)


def settings_env_names(text: str) -> set[str]:
    """The environment variables settings.py reads, whatever reads them (module docstring)."""
    nodes = list(ast.walk(ast.parse(text)))
    pairs = [(n.func, n.args[0]) for n in nodes if isinstance(n, ast.Call) and n.args]
    pairs += [(n.value, n.slice) for n in nodes if isinstance(n, ast.Subscript)]
    literals = [(r, k.value) for r, k in pairs if isinstance(k, ast.Constant) and k.value != ""]
    return {
        name
        for reader, name in literals
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", str(name))
        and ("_" in name.strip("_") or "env" in ast.unparse(reader).lower())
    }


# Every variable a file reads must be defined: (rule, file, its comment marker, how a variable is
# written there, where it must be defined, what happens when it is not).
ENV_NAMES = (
    ("stack.E010", NGINX_TEMPLATE, "#", r"\$\{(\w+)\}", COMPOSE, "nginx keeps the literal text"),
    ("stack.E010", NGINX_MAIN_TEMPLATE, "#", r"\$\{(\w+)\}", COMPOSE, "nginx keeps it as text"),
    ("stack.E011", COMPOSE, "#", r"\$\$|\$\{?(\w+)", ENV_EXAMPLE, "compose puts an empty string"),
    ("stack.E012", UWSGI_INI, "[;#]", r"\$\((\w+)\)", ENV_EXAMPLE, "uWSGI refuses to start"),
    ("stack.E013", SUPERVISORD_CONF, ";", r"%\(ENV_(\w+)\)s", ENV_EXAMPLE, "supervisord fails"),
    ("stack.E014", SETTINGS, "", settings_env_names, ENV_EXAMPLE, "Django uses its default"),
    ("stack.E016", ENV_EXAMPLE, "#", r"(?m)^\s*(?:export\s+)?(\w+)\s*=", ENV_FILE, "it is unset"),
)


def check_env_names(project: Project):
    """stack.E010-E014, E016: each variable in ENV_NAMES' files is defined where it is read from."""
    env_file = project.env_example if project.env_file is None else project.env_file
    defined = {ENV_EXAMPLE: {*project.env_example, "COMPOSE_PROJECT_NAME"}, ENV_FILE: {*env_file}}
    defined[COMPOSE] = set(project.nginx_env)
    for rule, file, comment, syntax, source, otherwise in ENV_NAMES:
        path = project.root / file
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        text = re.sub(rf"(?m)(^|\s){comment}.*$", "", text) if comment else text
        names = syntax(text) if callable(syntax) else set(re.findall(syntax, text)) - {""}
        for name in sorted(names - defined[source]):
            fix = f"add a `{name}=` line to {source}"
            if source == COMPOSE:
                fix = "add `X: ${X}` to the nginx service's `environment:`".replace("X", name)
            message = f"{name} is not defined in {source} ({otherwise}): {fix}"
            yield Problem(rule, (file, source), message)


def check_only_nginx_publishes(project: Project):
    """stack.E040: no service but nginx publishes a port (least of all Redis, with no password)."""
    for name, service in project.services.items():
        if name != project.nginx_service and service.get("ports"):
            why = " (Redis has no password)" if "redis" in str(service.get("image")) else ""
            message = f"service {name!r} publishes {service['ports']}{why}; only nginx may"
            yield Problem("stack.E040", (COMPOSE,), f"{message}: remove its `ports:`")


RULES = (check_agreements, check_env_names, check_only_nginx_publishes)


def check(root: Path) -> list[Problem]:
    """Run every rule on the project in `root`; return what they found."""
    project = load_project(root.resolve())
    return [project] if isinstance(project, Problem) else [p for r in RULES for p in r(project)]


def main(argv: list[str]) -> int:
    """Check the project named on the command line (default: the one holding this file)."""
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    print("\n".join(map(str, problems)) or f"deploy/check.py: ok, the configs in {root} agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
