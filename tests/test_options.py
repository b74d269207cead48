"""Every option bakes a clean project: no template syntax left, data files parse, ruff is clean.

The matrix comes from cookiecutter.json: the defaults, every choice of every choice option, plus
named edge values. Expensive per-bake checks run once per entry.
"""

import configparser
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHOICE_NEEDS, COOKIECUTTER_JSON

RUFF = str(Path(sys.executable).with_name("ruff"))


def option_matrix() -> list:
    """The defaults, every choice of every option, and edge values of the numeric answers."""
    matrix = [pytest.param({}, id="defaults")]
    for key, value in COOKIECUTTER_JSON.items():
        if isinstance(value, list) and not key.startswith("_"):
            matrix += [
                pytest.param(
                    {key: choice, **CHOICE_NEEDS.get((key, choice), {})}, id=f"{key}:{choice}"
                )
                for choice in value[1:]
            ]
    matrix += [
        pytest.param({"asgi_workers": "1"}, id="asgi_workers:1"),
        pytest.param(
            {"process_manager": "compose", "asgi_workers": "4", "domain_name": "chat.example.com"},
            id="compose+4-workers+domain",
        ),
        pytest.param(
            {"http_port": "80", "wsgi_port": "9001", "asgi_port": "9002"}, id="other-ports"
        ),
        pytest.param(
            {"process_manager": "compose", "https": "own_certificate"}, id="compose+own_certificate"
        ),
        pytest.param(
            {"https": "own_certificate", "http_port": "80", "https_port": "8443"},
            id="own_certificate+other-ports",
        ),
        pytest.param(
            {"process_manager": "compose", "https": "letsencrypt", "domain_name": "example.org"},
            id="compose+letsencrypt",
        ),
    ]
    return matrix


MATRIX = option_matrix()

# Django templates and GitHub workflows use {{ }} / {% %} themselves; they are copied unrendered.
OWN_TEMPLATE_SYNTAX = ("chat/templates/", ".github/workflows/")


def project_files(project: Path) -> list[Path]:
    """Every file of a baked project."""
    return [path for path in project.rglob("*") if path.is_file()]


@pytest.fixture(params=MATRIX)
def baked(request: pytest.FixtureRequest, bake_once) -> Path:
    """One baked project per matrix entry."""
    return bake_once(**request.param)


def test_no_template_syntax_is_left(baked: Path) -> None:
    """No cookiecutter variable is left, and no Jinja outside Django templates and workflows."""
    for path in project_files(baked):
        relative = path.relative_to(baked).as_posix()
        text = path.read_text(encoding="utf-8")
        assert "cookiecutter." not in text.replace(".cookiecutter.json", ""), relative
        if not relative.startswith(OWN_TEMPLATE_SYNTAX):
            assert "{{" not in text, relative
            assert "{%" not in text, relative


def test_data_files_parse(baked: Path) -> None:
    """Every YAML, TOML, JSON and INI file of the project parses."""
    parsers = {
        ".yaml": lambda text: yaml.safe_load(text),
        ".yml": lambda text: yaml.safe_load(text),
        ".toml": tomllib.loads,
        ".json": json.loads,
        ".ini": lambda text: configparser.ConfigParser(strict=False).read_string(text),
        ".conf": lambda text: configparser.ConfigParser(strict=False).read_string(text),
    }
    parsed = 0
    for path in project_files(baked):
        parse = parsers.get(path.suffix)
        if parse:
            parse(path.read_text(encoding="utf-8"))
            parsed += 1
    assert parsed >= 5


def test_ruff_check_and_format_are_clean(baked: Path) -> None:
    """The project passes its own ruff configuration, lint and format."""
    for command in ([RUFF, "check", "."], [RUFF, "format", "--check", "."]):
        result = subprocess.run(  # noqa: S603 - our venv's ruff
            command, cwd=baked, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_answers_are_recorded(baked: Path) -> None:
    """.cookiecutter.json records the answers the project was baked with."""
    answers = json.loads((baked / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["project_slug"] == baked.name
    env = (baked / ".env.example").read_text(encoding="utf-8")
    assert f"ASGI_WORKERS={answers['asgi_workers']}\n" in env
    assert f"HTTP_PORT={answers['http_port']}\n" in env


@pytest.mark.parametrize(
    ("answers", "origin"),
    [
        ({}, "http://localhost:8000"),
        ({"http_port": "80"}, "http://localhost"),
        ({"https": "own_certificate"}, "https://localhost"),
        ({"https": "own_certificate", "https_port": "8443"}, "https://localhost:8443"),
        ({"https": "letsencrypt", "domain_name": "chat.example.com"}, "https://chat.example.com"),
        (
            {"https": "own_certificate", "http_port": "443", "https_port": "80"},
            "https://localhost:80",
        ),
    ],
    ids=["http", "http-80", "https-443", "https-8443", "letsencrypt", "https-on-80"],
)
def test_https_choice_reaches_django(bake_once, answers: dict, origin: str) -> None:
    """DJANGO_HTTPS follows `https`, and the CSRF origin has the scheme and the port a browser
    sends (none for the scheme's default port)."""
    from harness.bake import read_env

    env = read_env(bake_once(**answers))
    assert env["DJANGO_CSRF_TRUSTED_ORIGINS"] == origin
    assert env["DJANGO_HTTPS"] == ("1" if origin.startswith("https") else "0")
    assert ("HTTPS_PORT" in env) == origin.startswith("https")


@pytest.mark.parametrize("https", COOKIECUTTER_JSON["https"])
@pytest.mark.parametrize("process_manager", COOKIECUTTER_JSON["process_manager"])
def test_generated_project_suite_passes(bake_once, process_manager: str, https: str) -> None:
    """The baked project's own pytest suite runs and passes, from inside the template's suite
    (with https, deploy/tests/test_tls_check.py among it; with letsencrypt, test_acme.py)."""
    answers = {"process_manager": process_manager, "https": https}
    project = bake_once(**answers, **CHOICE_NEEDS.get(("https", https), {}))
    result = subprocess.run(  # noqa: S603 - the same interpreter, the project's own tests
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
