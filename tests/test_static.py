"""Static validation of the deploy files of every process-manager choice, with the real tools.

Cheap checks over every choice, before anything runs: compose.yaml by the real Compose v2 parser
and the Compose Specification schema; the Dockerfile by hadolint; uWSGI and supervisord parse their
own configs; Django runs its deployment checks with production-like settings. (tests/containers/
then runs the files on a real Docker engine, once per process manager.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bake import read_env
from tests.certificates import Authority
from tests.conftest import CHOICE_NEEDS, COOKIECUTTER_JSON, require_binary

BIN = Path(sys.executable).parent
PROCESS_MANAGERS = COOKIECUTTER_JSON["process_manager"]
HTTPS = COOKIECUTTER_JSON["https"]


def run(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a validator; return its result for the assertions."""
    return subprocess.run(  # noqa: S603 - validators from our venv or the system
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(
    params=[(pm, https) for https in HTTPS for pm in PROCESS_MANAGERS],
    ids=lambda param: f"{param[0]}+https:{param[1]}",
)
def project(request: pytest.FixtureRequest, bake_once) -> Path:
    """A baked project of each process-manager choice, plain and with TLS."""
    process_manager, https = request.param
    return bake_once(
        process_manager=process_manager, https=https, **CHOICE_NEEDS.get(("https", https), {})
    )


def test_compose_file_passes_the_compose_parser(project: Path) -> None:
    """`docker compose config` (the real Compose v2 parser) accepts compose.yaml and .env."""
    compose = require_binary("docker-compose")
    result = run([compose, "-f", "compose.yaml", "config", "--quiet"], project)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("schema", "file"),
    [
        ("vendor.compose-spec", "compose.yaml"),
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
        ("vendor.dependabot", ".github/dependabot.yml"),
    ],
    ids=["compose-spec", "github-workflow", "dependabot"],
)
def test_file_matches_its_published_schema(project: Path, schema: str, file: str) -> None:
    """compose.yaml, the CI workflow and the Dependabot config validate against their schemas."""
    result = run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, file], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint(project: Path) -> None:
    """hadolint finds nothing in the Dockerfile (each ignored rule is justified in a comment)."""
    result = run([str(BIN / "hadolint"), "deploy/Dockerfile"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def native_env(project: Path, **overrides: str) -> dict[str, str]:
    """The baked .env as a process environment, the venv's tools first on PATH."""
    return {
        **os.environ,
        **read_env(project),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        **overrides,
    }


def test_uwsgi_reads_its_config_with_the_environment(project: Path) -> None:
    """uWSGI parses uwsgi.ini (strict mode) and binds the socket the environment names."""
    env = native_env(project, LISTEN_HOST="127.0.0.1", WSGI_PORT="18001")
    result = run([str(BIN / "uwsgi"), "--ini", "deploy/uwsgi.ini", "--get", "socket"], project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "127.0.0.1:18001"


@pytest.mark.parametrize("variable", ["LISTEN_HOST", "WSGI_PORT", "WSGI_PROCESSES", "WSGI_THREADS"])
def test_uwsgi_refuses_to_start_without_a_variable(project: Path, variable: str) -> None:
    """An unset variable stops uWSGI with its name, instead of binding a literal "$(...)"."""
    env = native_env(project)
    del env[variable]
    result = run([str(BIN / "uwsgi"), "--ini", "deploy/uwsgi.ini", "--get", "socket"], project, env)
    assert result.returncode != 0
    assert f"{variable}-is-not-set" in result.stdout + result.stderr


def test_supervisord_config_parses(bake_once) -> None:
    """supervisord reads its config: both programs, ASGI_WORKERS Daphne processes, the listener."""
    project = bake_once(process_manager="supervisor")
    from supervisor.options import ServerOptions

    env = read_env(project)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        options = ServerOptions()
        options.realize(["-c", str(project / "deploy/supervisor/supervisord.conf")])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    groups = {group.name: group for group in options.process_group_configs}
    assert set(groups) == {"uwsgi", "asgi", "exit_on_fatal"}
    assert len(groups["asgi"].process_configs) == int(env["ASGI_WORKERS"])
    uwsgi = groups["uwsgi"].process_configs[0]
    assert uwsgi.stopsignal == 15  # TERM: uwsgi.ini sets die-on-term


@pytest.mark.parametrize(
    ("https", "overrides"),
    [
        ("none", {}),
        ("none", {"DJANGO_HTTPS": "1"}),  # TLS ends at a load balancer in front
        ("own_certificate", {}),
        ("own_certificate", {"DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_HSTS_PRELOAD": "1"}),
        ("letsencrypt", {}),
    ],
    ids=[
        "plain",
        "behind-tls-balancer",
        "own_certificate",
        "own_certificate+hsts-opt-ins",
        "letsencrypt",
    ],
)
def test_django_deploy_checks_pass(bake_once, https: str, overrides: dict[str, str]) -> None:
    """`check --deploy --fail-level WARNING` passes with the bake's own .env (DJANGO_DEBUG off),
    with TLS off or on, and with the HSTS opt-ins."""
    project = bake_once(https=https, **CHOICE_NEEDS.get(("https", https), {}))
    env = native_env(project, DJANGO_DEBUG="0", **overrides)
    assert read_env(project)["DJANGO_HTTPS"] == ("0" if https == "none" else "1")
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = run(command, project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.fixture
def rendered_nginx(project: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """The nginx command and config of a baked project, rendered exactly as the full-stack tests
    render it (envsubst with the template's own variable list), without starting anything."""
    from harness.stack import Stack

    binaries = {name: require_binary(name) for name in ("nginx", "envsubst")}
    binaries["python"] = sys.executable
    stack = Stack(project, tmp_path, binaries)
    # The limits as shipped, not as fitted to this machine for a native run (Stack's __init__).
    for key in ("MAX_OPEN_FILES", "NGINX_WORKER_CONNECTIONS"):
        stack.env[key] = stack.dotenv[key]
    if "TLS_CERTIFICATE" in stack.env:  # nginx -t loads the certificate: a throwaway one
        domain = stack.env["NGINX_SERVER_NAME"]
        paths = (Path(stack.env["TLS_CERTIFICATE"]), Path(stack.env["TLS_CERTIFICATE_KEY"]))
        Authority().issue(domain, *paths)
    argv, _ = stack.nginx_command()
    return argv, Path(argv[-1])


def test_rendered_nginx_config_passes_nginx_t(rendered_nginx: tuple[list[str], Path]) -> None:
    """`nginx -t` accepts the rendered template; nginx's own $variables survived envsubst."""
    argv, conf = rendered_nginx
    result = run([*argv, "-t"], conf.parent)
    assert result.returncode == 0, result.stderr
    rendered = (conf.parent / "default.conf").read_text(encoding="utf-8")
    assert "$http_upgrade" in rendered
    assert "$host$site_port;" in rendered
    for text in (rendered, conf.read_text(encoding="utf-8")):
        directives = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in directives if "${" in line]


def test_rendered_nginx_config_passes_gixy(rendered_nginx: tuple[list[str], Path]) -> None:
    """gixy (nginx security analyser) finds no problem: no alias traversal, no header loss."""
    _, conf = rendered_nginx
    result = run([str(BIN / "gixy"), str(conf)], conf.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No issues found" in result.stdout
