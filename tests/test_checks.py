"""The config checks: deploy/check.py (shipped) and hooks/bake_checks.py (the bake's own).

Each breakage edits the written files of a copy of a baked project, the way a person editing
one config and forgetting another would, and expects exactly one rule id to fire from the bake's
checks, which run the shipped checker's rules too. The generated project tests its shipped rules
itself (deploy/tests/test_check.py).
"""

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CHOICE_NEEDS, COOKIECUTTER_JSON, TEMPLATE_DIR

PROCESS_MANAGERS = COOKIECUTTER_JSON["process_manager"]
SHIPPED_CHECKER = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "deploy" / "check.py"
BAKE_CHECKS = TEMPLATE_DIR / "hooks" / "bake_checks.py"
RULE_ID = re.compile(r"^(stack\.[EW]\d{3}) ", re.MULTILINE)

COMPOSE = "compose.yaml"
NGINX = "deploy/nginx/templates/default.conf.template"
NGINX_MAIN = "deploy/nginx/templates/nginx.conf.template"
UWSGI = "deploy/uwsgi.ini"
SUPERVISORD = "deploy/supervisor/supervisord.conf"
SETTINGS = "config/settings.py"

Edit = Callable[[Path], None]


def replace(file: str, old: str, new: str) -> Edit:
    """An edit replacing the first `old` in `file` (which must contain it) with `new`."""

    def edit(project: Path) -> None:
        path = project / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{file} no longer contains {old!r}: update this breakage"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def set_env(name: str, value: str) -> Edit:
    """An edit setting a variable in .env.example and .env alike (compose reads .env)."""

    def edit(project: Path) -> None:
        for file in (".env.example", ".env"):
            path = project / file
            text, count = re.subn(
                rf"^{name}=.*$", f"{name}={value}", path.read_text(encoding="utf-8"), flags=re.M
            )
            assert count == 1, f"{file} has no {name}= line: update this breakage"
            path.write_text(text, encoding="utf-8")

    return edit


def drop_env_line(file: str, name: str) -> Edit:
    """An edit deleting a variable's line from one env file."""

    def edit(project: Path) -> None:
        path = project / file
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(f"{name}=")]
        assert len(kept) == len(lines) - 1, f"{file} has no {name}= line"
        path.write_text("".join(kept), encoding="utf-8")

    return edit


@dataclass(frozen=True)
class Breakage:
    """One mistake made in a baked project, and the rule that must name it."""

    name: str
    process_manager: str
    rule: str
    edits: tuple[Edit, ...]
    https: str = "none"

    def __str__(self) -> str:
        tls = "" if self.https == "none" else f"+https:{self.https}"
        return f"{self.rule}:{self.name}:{self.process_manager}{tls}"


SUPERVISOR, COMPOSE_PM = "supervisor", "compose"

OWN, LETSENCRYPT = "own_certificate", "letsencrypt"

BREAKAGES = (
    Breakage(
        "upstream-host-renamed",
        SUPERVISOR,
        "stack.E001",
        (
            replace(
                NGINX, "$wsgi_address ${WSGI_HOST}:${WSGI_PORT};", "$wsgi_address web:${WSGI_PORT};"
            ),
        ),
    ),
    Breakage("asgi-host-not-a-service", COMPOSE_PM, "stack.E001", (set_env("ASGI_HOST", "ws"),)),
    Breakage(
        "uwsgi-socket-literal-port",
        SUPERVISOR,
        "stack.E002",
        (replace(UWSGI, "socket = $(LISTEN_HOST):$(WSGI_PORT)", "socket = $(LISTEN_HOST):9001"),),
    ),
    Breakage(
        "fcgi-socket-literal-port",
        SUPERVISOR,
        "stack.E002",
        (replace(SUPERVISORD, ":%(ENV_ASGI_PORT)s", ":9002"),),
    ),
    Breakage(
        "daphne-port-literal",
        COMPOSE_PM,
        "stack.E002",
        (replace(COMPOSE, "--port=${ASGI_PORT}", "--port=9002"),),
    ),
    Breakage("pages-sent-to-daphne", COMPOSE_PM, "stack.E003", (set_env("WSGI_HOST", "asgi"),)),
    Breakage(
        "websockets-sent-to-redis", SUPERVISOR, "stack.E003", (set_env("ASGI_HOST", "redis"),)
    ),
    Breakage(
        "ws-location-renamed",
        SUPERVISOR,
        "stack.E004",
        (replace(NGINX, "location /ws/ {", "location /sockets/ {"),),
    ),
    Breakage(
        "ws-location-renamed",
        COMPOSE_PM,
        "stack.E004",
        (replace(NGINX, "location /ws/ {", "location /websocket/ {"),),
    ),
    Breakage(
        "root-location-proxies-to-daphne",
        SUPERVISOR,
        "stack.E005",
        (
            replace(
                NGINX, "uwsgi_pass $wsgi_address;", "proxy_pass http://${ASGI_HOST}:${ASGI_PORT};"
            ),
        ),
    ),
    Breakage(
        "static-alias-changed",
        SUPERVISOR,
        "stack.E006",
        (replace(NGINX, "alias ${NGINX_STATIC_ROOT}/;", "alias /var/www/static/;"),),
    ),
    Breakage(
        "static-root-moved",
        COMPOSE_PM,
        "stack.E007",
        (set_env("DJANGO_STATIC_ROOT", "/app/static"),),
    ),
    Breakage(
        "static-url-changed",
        SUPERVISOR,
        "stack.E008",
        (replace(SETTINGS, 'STATIC_URL = "/static/"', 'STATIC_URL = "/assets/"'),),
    ),
    Breakage(
        "template-folder-not-mounted",
        COMPOSE_PM,
        "stack.E009",
        (replace(COMPOSE, "./deploy/nginx/templates:", "./deploy/nginx:"),),
    ),
    Breakage(
        "nginx-variable-not-in-environment",
        SUPERVISOR,
        "stack.E010",
        (
            replace(
                NGINX, "server_tokens off;", 'server_tokens off;\nadd_header X-Build "${BUILD}";'
            ),
        ),
    ),
    Breakage(
        "compose-variable-undefined",
        COMPOSE_PM,
        "stack.E011",
        (
            replace(
                COMPOSE,
                "NGINX_STATIC_ROOT: /srv/static",
                "NGINX_STATIC_ROOT: /srv/static\n      BUILD: ${BUILD_ID}",
            ),
        ),
    ),
    Breakage(
        "uwsgi-variable-undefined",
        COMPOSE_PM,
        "stack.E012",
        (drop_env_line(".env.example", "WSGI_PROCESSES"),),
    ),
    Breakage(
        "uwsgi-variable-unguarded",
        SUPERVISOR,
        "stack.E017",
        (
            replace(
                UWSGI,
                "if-not-env = WSGI_THREADS\n"
                "WSGI_THREADS-is-not-set-see-.env.example = true\nendif =\n",
                "",
            ),
        ),
    ),
    Breakage(
        "supervisor-variable-undefined",
        SUPERVISOR,
        "stack.E013",
        (replace(SUPERVISORD, "%(ENV_ASGI_WORKERS)s", "%(ENV_DAPHNE_WORKERS)s"),),
    ),
    Breakage(
        "settings-variable-undefined",
        SUPERVISOR,
        "stack.E014",
        (
            replace(
                SETTINGS,
                'STATIC_URL = "/static/"',
                'STATIC_URL = "/static/"\nFEATURE = os.environ.get("DJANGO_FEATURE", "")',
            ),
        ),
    ),
    Breakage(
        # Another env reader (django-environ's, or any): its names are checked all the same.
        "settings-read-by-another-library",
        COMPOSE_PM,
        "stack.E014",
        (
            replace(
                SETTINGS,
                'STATIC_URL = "/static/"',
                'STATIC_URL = "/static/"\nFEATURE = config.value("FEATURE_FLAGS", cast=list)\n'
                'VERBOSE = env("VERBOSE")',
            ),
        ),
    ),
    Breakage(
        "env-file-not-read",
        COMPOSE_PM,
        "stack.E015",
        (replace(COMPOSE, "env_file: .env", "env_file: production.env"),),
    ),
    Breakage("env-file-stale", SUPERVISOR, "stack.E016", (drop_env_line(".env", "ASGI_WORKERS"),)),
    Breakage(
        "event-listener-missing",
        SUPERVISOR,
        "stack.E020",
        (replace(SUPERVISORD, "exit_on_fatal.py", "exit_on_fatal_listener.py"),),
    ),
    Breakage(
        "uwsgi-ini-missing",
        COMPOSE_PM,
        "stack.E020",
        (replace(COMPOSE, '"--ini", "deploy/uwsgi.ini"', '"--ini", "deploy/wsgi.ini"'),),
    ),
    Breakage(
        "uwsgi-module-renamed",
        SUPERVISOR,
        "stack.E021",
        (replace(UWSGI, "module = config.wsgi:application", "module = config.web:application"),),
    ),
    Breakage(
        "daphne-application-renamed",
        COMPOSE_PM,
        "stack.E021",
        (replace(COMPOSE, "- config.asgi:application", "- config.asgi:app"),),
    ),
    Breakage(
        "redis-url-host",
        SUPERVISOR,
        "stack.E030",
        (set_env("REDIS_URL", "redis://cache:6379/0"),),
    ),
    Breakage(
        "redis-url-port",
        COMPOSE_PM,
        "stack.E030",
        (set_env("REDIS_URL", "redis://redis:6380/0"),),
    ),
    Breakage(
        "redis-published",
        SUPERVISOR,
        "stack.E040",
        (
            replace(
                COMPOSE,
                "    image: redis",
                '    ports:\n      - "6379:6379"\n    image: redis',
            ),
        ),
    ),
    Breakage(
        "extra-nginx-port",
        COMPOSE_PM,
        "stack.E041",
        (
            replace(
                COMPOSE,
                '}${HTTP_PORT}:${HTTP_PORT}"',
                '}${HTTP_PORT}:${HTTP_PORT}"\n      - "8443:443"',
            ),
        ),
    ),
    Breakage(
        "redis-without-restart",
        COMPOSE_PM,
        "stack.E050",
        (
            replace(
                COMPOSE,
                "      - redis:/data\n    restart: unless-stopped\n",
                "      - redis:/data\n",
            ),
        ),
    ),
    Breakage(
        "uwsgi-stopped-with-quit",
        SUPERVISOR,
        "stack.E051",
        (
            replace(
                SUPERVISORD, "stopsignal = TERM\nstopwaitsecs", "stopsignal = QUIT\nstopwaitsecs"
            ),
        ),
    ),
    Breakage(
        "uwsgi-without-die-on-term",
        COMPOSE_PM,
        "stack.E051",
        (replace(UWSGI, "die-on-term = true", "die-on-term = false"),),
    ),
    Breakage(
        "uwsgi-binds-loopback",
        SUPERVISOR,
        "stack.E052",
        (replace(UWSGI, "socket = $(LISTEN_HOST):", "socket = 127.0.0.1:"),),
    ),
    Breakage(
        "uwsgi-buffer-smaller-than-nginx-headers",
        COMPOSE_PM,
        "stack.E053",
        (replace(UWSGI, "buffer-size = 65535", "buffer-size = 8192"),),
    ),
    Breakage(
        "nginx-headers-larger-than-uwsgi-buffer",
        SUPERVISOR,
        "stack.E053",
        (
            replace(
                NGINX, "large_client_header_buffers 4 8k;", "large_client_header_buffers 8 16k;"
            ),
        ),
    ),
    Breakage(
        "nginx-connections-above-its-open-files",
        SUPERVISOR,
        "stack.E054",
        (set_env("NGINX_WORKER_CONNECTIONS", "40000"),),
    ),
    Breakage(
        "nginx-container-without-nofile",
        COMPOSE_PM,
        "stack.E055",
        (
            replace(
                COMPOSE,
                "      - static:/srv/static:ro\n"
                "    # Each WebSocket holds two descriptors in an nginx worker "
                '(.env, "Connection limits").\n'
                "    ulimits:\n      nofile:\n        soft: ${MAX_OPEN_FILES}\n"
                "        hard: ${MAX_OPEN_FILES}\n",
                "      - static:/srv/static:ro\n",
            ),
        ),
    ),
    Breakage(
        "nginx-main-variable-unset",
        COMPOSE_PM,
        "stack.E010",
        (
            replace(
                NGINX_MAIN,
                "worker_connections ${NGINX_WORKER_CONNECTIONS};",
                "worker_connections ${NGINX_CONNECTIONS};",
            ),
        ),
    ),
    Breakage(
        "nginx-main-config-removed",
        SUPERVISOR,
        "stack.E054",
        (lambda project: (project / NGINX_MAIN).unlink(),),
    ),
    Breakage(
        "healthcheck-probes-unbound-port",
        SUPERVISOR,
        "stack.E022",
        (replace(COMPOSE, '"${WSGI_PORT}", "http:${ASGI_PORT}"]', '"${WSGI_PORT}", "http:9999"]'),),
    ),
    # https: the certificate nginx serves is the one `setup` checks, from the same mount.
    Breakage(
        "https-published-onto-another-port",
        SUPERVISOR,
        "stack.E041",
        (replace(COMPOSE, "}${HTTPS_PORT}:${HTTPS_PORT}", "}${HTTPS_PORT}:${HTTP_PORT}"),),
        OWN,
    ),
    Breakage(
        "redirect-at-server-level",
        SUPERVISOR,
        "stack.E060",
        (
            replace(
                NGINX,
                "    location / {\n        return 301 https://$host$https_site_port$request_uri;",
                "    return 301 https://$host$https_site_port$request_uri;\n    location / {",
            ),
        ),
        OWN,
    ),
    Breakage(
        "acme-location-without-caret",
        COMPOSE_PM,
        "stack.E060",
        (replace(NGINX, "location ^~ /.well-known/", "location /.well-known/"),),
        OWN,
    ),
    Breakage(
        "acme-location-redirects",
        SUPERVISOR,
        "stack.E060",
        (
            replace(
                NGINX,
                "        log_not_found off;\n",
                "        return 301 https://$host$https_site_port$request_uri;\n",
            ),
        ),
        OWN,
    ),
    Breakage(
        "acme-webroot-not-a-volume",
        SUPERVISOR,
        "stack.E060",
        (replace(COMPOSE, "ACME_WEBROOT: /var/www/acme", "ACME_WEBROOT: /srv/acme"),),
        OWN,
    ),
    Breakage(
        "certificate-outside-the-mount",
        SUPERVISOR,
        "stack.E061",
        (set_env("TLS_CERTIFICATE", "/etc/ssl/fullchain.pem"),),
        OWN,
    ),
    Breakage(
        "nginx-certificate-not-the-checked-one",
        COMPOSE_PM,
        "stack.E061",
        (
            replace(
                COMPOSE, "TLS_CERTIFICATE: ${TLS_CERTIFICATE}", "TLS_CERTIFICATE: /etc/tls/a.pem"
            ),
        ),
        OWN,
    ),
    Breakage(
        "setup-mounts-other-certificates",
        SUPERVISOR,
        "stack.E061",
        (replace(COMPOSE, "${TLS_HOST_DIR}:/etc/tls:ro", "./certs:/etc/tls:ro"),),
        OWN,
    ),
    Breakage(
        "certificate-never-checked",
        COMPOSE_PM,
        "stack.E061",
        (replace(COMPOSE, "python deploy/tls_check.py && ", ""),),
        OWN,
    ),
    # https=letsencrypt: the same paths, filled by certbot through the `tls` and `acme` volumes.
    Breakage(
        "bootstrap-writes-another-folder",
        COMPOSE_PM,
        "stack.E061",
        (replace(COMPOSE, "      - tls:/etc/tls\n", "      - ./certs:/etc/tls\n"),),
        LETSENCRYPT,
    ),
    Breakage(
        "certbot-writes-another-folder",
        SUPERVISOR,
        "stack.E061",
        (
            replace(
                COMPOSE,
                "      - tls:/etc/tls\n      - acme",
                "      - ./certs:/etc/tls\n      - acme",
            ),
        ),
        LETSENCRYPT,
    ),
    Breakage(
        "certbot-webroot-outside-the-volume",
        SUPERVISOR,
        "stack.E060",
        (set_env("ACME_WEBROOT", "/srv/acme"),),
        LETSENCRYPT,
    ),
)


def run_checker(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the project's own deploy/check.py, as its tests and CI do."""
    return subprocess.run(
        [sys.executable, str(project / "deploy" / "check.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def run_bake_checks(project: Path) -> subprocess.CompletedProcess:
    """Run the bake's checks (the shipped rules and the rest) the way the post-gen hook does."""
    return subprocess.run(
        [sys.executable, str(BAKE_CHECKS), str(project)],
        capture_output=True,
        text=True,
        check=False,
    )


def copy_of(project: Path, tmp_path: Path) -> Path:
    """A private copy of a baked project, safe to break."""
    return Path(shutil.copytree(project, tmp_path / project.name))


@pytest.mark.parametrize("https", COOKIECUTTER_JSON["https"])
@pytest.mark.parametrize("process_manager", PROCESS_MANAGERS)
def test_checker_passes_on_a_fresh_bake(bake_once, process_manager: str, https: str) -> None:
    """A fresh bake of each choice passes the checker and the bake's checks: ok, exit 0."""
    project = bake_once(
        process_manager=process_manager, https=https, **CHOICE_NEEDS.get(("https", https), {})
    )
    for result in (run_checker(project), run_bake_checks(project)):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok" in result.stdout
        assert not RULE_ID.findall(result.stdout)


@pytest.mark.parametrize("https", COOKIECUTTER_JSON["https"])
@pytest.mark.parametrize("process_manager", PROCESS_MANAGERS)
def test_checker_passes_without_dotenv(
    bake_once, tmp_path: Path, process_manager: str, https: str
) -> None:
    """Without .env (a CI checkout: it is never committed) the values come from .env.example."""
    answers = {"process_manager": process_manager, "https": https}
    baked = bake_once(**answers, **CHOICE_NEEDS.get(("https", https), {}))
    project = copy_of(baked, tmp_path)
    (project / ".env").unlink()
    for result in (run_checker(project, str(project)), run_bake_checks(project)):
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
def test_checker_names_exactly_the_broken_rule(
    bake_once, tmp_path: Path, breakage: Breakage
) -> None:
    """One edit that makes two files disagree fails the checker with that rule's id alone."""
    baked = bake_once(
        process_manager=breakage.process_manager,
        https=breakage.https,
        **CHOICE_NEEDS.get(("https", breakage.https), {}),
    )
    project = copy_of(baked, tmp_path)
    for edit in breakage.edits:
        edit(project)
    result = run_bake_checks(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert set(RULE_ID.findall(result.stdout)) == {breakage.rule}, result.stdout


def rule_ids(path: Path) -> set[str]:
    """The rule ids a checker module can report (E000, unreadable files, is no rule)."""
    return set(re.findall(r'"(stack\.E\d{3})"', path.read_text(encoding="utf-8"))) - {"stack.E000"}


def test_breakages_cover_every_rule() -> None:
    """Each rule, shipped or checked at bake time, is broken at least once above; no id is in
    both places, so a fired id says which file to read."""
    shipped, bake_time = rule_ids(SHIPPED_CHECKER), rule_ids(BAKE_CHECKS)
    assert not shipped & bake_time
    assert shipped | bake_time == {breakage.rule for breakage in BREAKAGES}


def test_shipped_checker_is_short() -> None:
    """The checker a project ships reads in one sitting: at most 350 lines."""
    assert len(SHIPPED_CHECKER.read_text(encoding="utf-8").splitlines()) <= 350


def test_checker_lines_name_the_files(bake_once, tmp_path: Path) -> None:
    """A problem line gives the rule id, then the files that disagree, then the message."""
    project = copy_of(bake_once(), tmp_path)
    set_env("WSGI_HOST", "web")(project)
    result = run_checker(project, str(project))
    assert result.stdout.splitlines()[0].startswith(
        f"stack.E001 {NGINX} <-> {COMPOSE}: nginx uwsgi_pass sends requests to web:8001, but 'web'"
    )


def test_checker_reports_a_missing_file(bake_once, tmp_path: Path) -> None:
    """A project without compose.yaml fails with stack.E000 instead of a traceback."""
    project = copy_of(bake_once(), tmp_path)
    (project / COMPOSE).unlink()
    for result in (run_checker(project, str(project)), run_bake_checks(project)):
        assert result.returncode == 1
        assert RULE_ID.findall(result.stdout) == ["stack.E000"]
        assert "Traceback" not in result.stderr
