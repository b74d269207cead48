"""Refuse bad answers before anything is written.

Each rule is one function `check_<what>(answers) -> str | None` returning the problem (naming the
field, the bad value and the fix) or None. All rules run, every problem is printed, and the hook
exits 1, so cookiecutter writes nothing. Stdlib only: cookiecutter runs this file on its own.

process_manager and https have no rule of their own here: cookiecutter itself refuses a value
outside their choices, even with --no-input (tests/test_hooks.py keeps it so).
"""

import json
import keyword
import re
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Final

ANSWERS: Final = json.loads(r"""{{ cookiecutter | tojson }}""")

# Top-level modules the generated project imports or ships. The slug names the project's folder,
# its distribution and its image; a folder named like one of these modules shadows it for any
# Python started in the folder above (the working directory comes first on sys.path).
RESERVED_NAMES: Final = frozenset(
    {
        "django",
        "channels",
        "channels_redis",
        "daphne",
        "redis",
        "uwsgi",
        "supervisor",
        "asgiref",
        "twisted",
        "autobahn",
        "pytest",
        "yaml",
        "chat",
        "config",
        "deploy",
        "tests",
        "test",
        "manage",
        "conftest",
    }
)
SLUG_PATTERN: Final = re.compile(r"[a-z_][a-z0-9_]*")
# The slug names a folder, a compose project and an image (`<slug>-app`, containers
# `<slug>-app-1`): short enough for every one of them, and for people typing it.
MAX_SLUG_LENGTH: Final = 50
HOSTNAME_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
PORT_FIELDS: Final = ("http_port", "https_port", "wsgi_port", "asgi_port")
REDIS_PORT: Final = 6379
# A name under this one stays on the machine (RFC 6761): no certificate authority validates it.
LOCAL_DOMAIN: Final = "localhost"
MAX_ASGI_WORKERS: Final = 32
# The oldest cookiecutter that bakes this template as intended, found by baking with releases
# from 1.7.3 to 2.7.1 (the tests run 2.7.1): 2.2.3 asks every __prompts__ question in words;
# 2.2.0 shows the process_manager question as a Python dict, 2.1 asks with the bare keys, and
# 1.7 renders configs the checker refuses.
MIN_COOKIECUTTER: Final = (2, 2, 3)


def as_int(value: object) -> int | None:
    """Return `value` as an int when it is written as a plain decimal number, else None."""
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def installed_cookiecutter() -> str | None:
    """Return the version of the cookiecutter running this hook (same interpreter), if known."""
    try:
        return metadata.version("cookiecutter")
    except metadata.PackageNotFoundError:
        return None


def check_cookiecutter_version(answers: dict) -> str | None:
    """The cookiecutter baking this template must be MIN_COOKIECUTTER or newer."""
    installed = installed_cookiecutter()
    numbers = re.match(r"\d+(\.\d+)*", installed or "")
    if numbers is None:
        return None  # not a version we can read: let cookiecutter try
    if tuple(int(n) for n in numbers.group().split(".")[:3]) >= MIN_COOKIECUTTER:
        return None
    required = ".".join(map(str, MIN_COOKIECUTTER))
    return (
        f"cookiecutter {installed} is installed, but this template needs cookiecutter "
        f"{required} or newer: upgrade it (pipx upgrade cookiecutter, or "
        "pip install -U cookiecutter) and run it again."
    )


def check_project_name(answers: dict) -> str | None:
    """project_name must have some text in it."""
    if not str(answers["project_name"]).strip():
        return "project_name is empty: give the project a name, e.g. project_name='Team Chat'."
    return None


def check_project_slug(answers: dict) -> str | None:
    """project_slug must be a short lowercase identifier that shadows no module the project
    imports."""
    slug = str(answers["project_slug"])
    fix = "choose another, e.g. project_slug=team_chat"
    if len(slug) > MAX_SLUG_LENGTH:
        return (
            f"project_slug={slug[:20]!r}... is {len(slug)} characters long; it names the project's "
            f"folder, its compose project and its image, so at most {MAX_SLUG_LENGTH}: give a "
            "shorter project_name, or project_slug=team_chat."
        )
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            f"project_slug={slug!r} is not a lowercase Python identifier "
            f"(letters a-z, digits, '_'; not starting with a digit): {fix}."
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        return f"project_slug={slug!r} is a Python keyword: {fix}."
    if slug in RESERVED_NAMES or slug in sys.stdlib_module_names:
        return f"project_slug={slug!r} would shadow the module {slug!r} the project imports: {fix}."
    return None


def check_domain_name(answers: dict) -> str | None:
    """domain_name must be a host name (labels of letters, digits and inner '-') or localhost."""
    domain = str(answers["domain_name"])
    labels = domain.rstrip(".").split(".")
    if len(domain) <= 253 and all(HOSTNAME_LABEL.fullmatch(label) for label in labels):
        return None
    return (
        f"domain_name={domain!r} is not a valid host name: use letters, digits, '-' and dots, "
        "e.g. domain_name=chat.example.com or domain_name=localhost."
    )


def check_ports_are_numbers(answers: dict) -> str | None:
    """Every port is a whole number from 1 to 65535."""
    bad = [
        f"{field}={answers[field]!r}"
        for field in PORT_FIELDS
        if (port := as_int(answers[field])) is None or not 1 <= port <= 65535
    ]
    if bad:
        return f"{', '.join(bad)}: a port is a whole number from 1 to 65535, e.g. http_port=8000."
    return None


def check_ports_differ(answers: dict) -> str | None:
    """nginx (http and https), uWSGI and Daphne need a port each, and none may be Redis' port."""
    ports = {field: as_int(answers[field]) for field in PORT_FIELDS}
    if None in ports.values():
        return None  # check_ports_are_numbers reports it
    for field, port in ports.items():
        if port == REDIS_PORT:
            return f"{field}={port} is Redis' port in the stack: pick another, e.g. {field}=8003."
    if len(set(ports.values())) < len(ports):
        shown = ", ".join(f"{field}={port}" for field, port in ports.items())
        return f"{shown}: the ports must all differ, e.g. 8000, 443, 8001 and 8002."
    return None


def check_domain_can_get_a_certificate(answers: dict) -> str | None:
    """https=letsencrypt needs a public host name: a CA cannot reach `localhost` or a bare name."""
    domain = str(answers["domain_name"]).rstrip(".").lower()
    local = domain == LOCAL_DOMAIN or domain.endswith("." + LOCAL_DOMAIN) or "." not in domain
    if answers.get("https") != "letsencrypt" or not local:
        return None
    return (
        f"domain_name={answers['domain_name']!r} cannot get a Let's Encrypt certificate: the CA "
        "must reach the site by a public name; give one (domain_name=chat.example.com), or pick "
        "https=own_certificate (or https=none) for a local site."
    )


def check_asgi_workers(answers: dict) -> str | None:
    """asgi_workers is a whole number from 1 to 32."""
    workers = as_int(answers["asgi_workers"])
    if workers is None or not 1 <= workers <= MAX_ASGI_WORKERS:
        return (
            f"asgi_workers={answers['asgi_workers']!r}: give a whole number from 1 to "
            f"{MAX_ASGI_WORKERS}, e.g. asgi_workers=2."
        )
    return None


CHECKS: Final[tuple[Callable[[dict], str | None], ...]] = (
    check_cookiecutter_version,
    check_project_name,
    check_project_slug,
    check_domain_name,
    check_ports_are_numbers,
    check_ports_differ,
    check_asgi_workers,
    check_domain_can_get_a_certificate,
)


def main() -> int:
    """Run every check, print every problem, and return the exit status."""
    problems = [problem for check in CHECKS if (problem := check(ANSWERS))]
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        print("Nothing was generated. Run cookiecutter again, fixed.", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
