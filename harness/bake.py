"""Read a baked project the way compose reads it, and move what it says onto this machine.

The formats are read by the project's own checker, deploy/check.py (DESIGN.md, "The config
checker (one implementation)"): `read_env_file` for .env, `interpolate` for compose's `${VAR}`
forms, `load_compose` for compose.yaml with every string interpolated. This module only loads
that file and decides what a service means natively: its command, its ports, its volumes, and
the environment with every host 127.0.0.1 and every port a free one.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

from harness.processes import LOOPBACK, free_ports

CHECKER = Path("deploy") / "check.py"


class BakeError(RuntimeError):
    """The baked files describe something the native stack cannot run."""


# --- The project's own readers ---------------------------------------------------------------


def checker(project: Path) -> ModuleType:
    """The baked project's deploy/check.py, loaded as a module (once per file)."""
    return _load_checker(project.resolve() / CHECKER)


@cache
def _load_checker(path: Path) -> ModuleType:
    name = f"_baked_check_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BakeError(f"cannot load the project's checker: {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the file executes.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_env(project: Path, path: Path | None = None) -> dict[str, str]:
    """A dotenv file (default: the project's .env), read by the project's checker."""
    return checker(project).read_env_file(project / ".env" if path is None else path)


def load_compose(project: Path, env: dict[str, str]) -> dict:
    """compose.yaml parsed, every string interpolated against `env`, by the project's checker."""
    return checker(project).load_compose(project, env)


# --- What the services say ---------------------------------------------------------------------


def command_argv(service: dict) -> list[str]:
    """A service's `command:` as an argument list (compose.yaml's commands are lists)."""
    command = service.get("command")
    if command is None:
        raise BakeError(f"service has no command: {service}")
    if isinstance(command, str):
        # compose splits a string command shell-style; ours are lists, keep it simple and strict.
        raise BakeError(f"compose.yaml command is a string, expected a list: {command!r}")
    return [str(argument) for argument in command]


def volume_mounts(service: dict) -> dict[str, PurePosixPath]:
    """A service's named volumes as {volume name: container path}."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        target = rest.split(":")[0]
        if source and not source.startswith((".", "/")) and target:
            mounts[source] = PurePosixPath(target)
    return mounts


def start_order(services: dict[str, dict]) -> list[str]:
    """Service names ordered by `depends_on` (compose's start order), ties in file order."""
    order: list[str] = []
    pending = list(services)
    while pending:
        for name in pending:
            depends = services[name].get("depends_on", {})
            if all(dependency in order for dependency in depends):
                order.append(name)
                pending.remove(name)
                break
        else:
            raise BakeError(f"compose.yaml depends_on has a cycle among {pending}")
    return order


def one_shot_services(services: dict[str, dict]) -> set[str]:
    """Services others wait for to *finish* (condition: service_completed_successfully)."""
    return {
        dependency
        for service in services.values()
        for dependency, rule in (service.get("depends_on") or {}).items()
        if isinstance(rule, dict) and rule.get("condition") == "service_completed_successfully"
    }


def healthcheck_ports(service: dict, env: dict[str, str]) -> list[int]:
    """The ports a service's healthcheck probes: the numbers in its (interpolated) test that
    are the value of some `*_PORT` in `env`, in the order the test names them."""
    ports = {value for key, value in env.items() if key.endswith("_PORT")}
    test = (service.get("healthcheck") or {}).get("test") or []
    numbers = [number for part in test for number in re.findall(r"\d+", str(part))]
    return [int(number) for number in dict.fromkeys(numbers) if number in ports]


def service_by_image(services: dict[str, dict], image: str) -> str:
    """The one service that runs the registry image `image` (`nginx`, `redis`)."""
    (name,) = (
        name
        for name, service in services.items()
        if str(service.get("image", "")).split(":")[0].split("/")[-1] == image
    )
    return name


# --- The bake, moved onto this machine ---------------------------------------------------------


def native_env(
    dotenv: dict[str, str],
    *,
    service_names: Iterable[str],
    mounts: dict[str, PurePosixPath],
    volume_dirs: dict[str, Path],
    root: Path,
    redis_port: int,
) -> dict[str, str]:
    """The baked .env, moved onto this machine.

    - every `*_HOST` is 127.0.0.1 (LISTEN_HOST included: nothing listens beyond loopback);
    - every `*_PORT` is a free port; URLs naming an old port (CSRF origins) follow it;
    - a URL host that is a compose service (REDIS_URL's `redis`) is 127.0.0.1, at `redis_port`;
    - an absolute path inside a named volume lives in that volume's folder under tmp (so the
      static volume that collectstatic fills is the folder nginx serves); any other absolute
      path moves under `root`.
    """
    services = set(service_names)
    port_keys = [key for key in dotenv if key.endswith("_PORT")]
    new_ports = dict(zip(port_keys, free_ports(len(port_keys)), strict=True))
    old_to_new = {int(dotenv[key]): port for key, port in new_ports.items()}
    env = {}
    for key, value in dotenv.items():
        if key.endswith("_HOST"):
            value = LOOPBACK
        elif key in new_ports:
            value = str(new_ports[key])
        elif "://" in value:
            value = ",".join(
                _move_url(url.strip(), services, old_to_new, redis_port) for url in value.split(",")
            )
        elif value.startswith("/"):
            value = str(native_path(PurePosixPath(value), mounts, volume_dirs, root))
        env[key] = value
    return env


def _move_url(url: str, services: set[str], old_to_new: dict[int, int], redis_port: int) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    if host in services:
        host, port = LOOPBACK, redis_port
    elif port in old_to_new:
        port = old_to_new[port]
    netloc = f"{host}:{port}" if port else str(host)
    return urlunsplit(parts._replace(netloc=netloc))


def native_path(
    path: PurePosixPath,
    mounts: dict[str, PurePosixPath],
    volume_dirs: dict[str, Path],
    root: Path,
) -> Path:
    """Where a container path lives natively: in its named volume's folder, or under `root`."""
    for volume, target in mounts.items():
        if path == target or target in path.parents:
            return volume_dirs[volume] / path.relative_to(target)
    return root / path.relative_to("/")
