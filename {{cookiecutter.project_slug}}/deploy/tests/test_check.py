"""deploy/check.py passes on this project, and names each rule it ships when that rule is broken.

Each breakage copies the files the checker reads to a temporary folder, makes one edit the way a
person changing one config and forgetting another would, and expects exactly one rule id.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent.parent
CHECKER = PROJECT / "deploy" / "check.py"
RULE_ID = re.compile(r"^(stack\.E\d{3}) ", re.MULTILINE)
COMPOSE = "compose.yaml"
NGINX = "deploy/nginx/templates/default.conf.template"
SETTINGS = "config/settings.py"


def run_checker(project: Path) -> subprocess.CompletedProcess:
    """Run deploy/check.py on `project`."""
    command = [sys.executable, str(CHECKER), str(project)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def load_checker():
    """deploy/check.py as a module, for its readers."""
    spec = importlib.util.spec_from_file_location("deploy_check", CHECKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files the checker reads, with .env.example's values only (as in CI)."""
    for name in ("config", "deploy"):
        shutil.copytree(PROJECT / name, tmp_path / name, ignore=shutil.ignore_patterns("__py*"))
    for name in (COMPOSE, ".env.example"):
        shutil.copy(PROJECT / name, tmp_path / name)
    return tmp_path


def replace(file: str, old: str, new: str):
    """An edit replacing the first `old` in `file` (which must contain it) with `new`."""

    def edit(project: Path) -> None:
        path = project / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{file} no longer contains {old!r}: update this breakage"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def set_env(name: str, value: str):
    """An edit setting a variable in .env.example."""
    return lambda project: re_edit(project, rf"(?m)^{name}=.*$", f"{name}={value}")


def drop_env(name: str, file: str = ".env.example"):
    """An edit deleting a variable's line from an env file."""
    return lambda project: re_edit(project, rf"(?m)^{name}=.*\n", "", file)


def re_edit(project: Path, pattern: str, new: str, file: str = ".env.example") -> None:
    """Replace the one match of `pattern` in `file` with `new`."""
    path = project / file
    text, count = re.subn(pattern, new, path.read_text(encoding="utf-8"))
    assert count == 1, f"{file}: no match for {pattern!r}: update this breakage"
    path.write_text(text, encoding="utf-8")


def write_stale_env(project: Path) -> None:
    """A .env from before a variable was added to .env.example."""
    shutil.copy(project / ".env.example", project / ".env")
    drop_env("ASGI_WORKERS", ".env")(project)


BREAKAGES = {
    "stack.E001": set_env("WSGI_HOST", "web"),
    "stack.E002": replace(NGINX, "${WSGI_HOST}:${WSGI_PORT};", "${WSGI_HOST}:9001;"),
    "stack.E003": set_env("ASGI_HOST", "redis"),
    "stack.E010": replace(NGINX, "server_tokens off;", 'add_header X-Build "${BUILD}";'),
    "stack.E011": replace(COMPOSE, "ROOT: /srv/static", "ROOT: ${STATIC_DIR}"),
    "stack.E012": drop_env("WSGI_PROCESSES"),
{%- if cookiecutter.process_manager == "supervisor" %}
    "stack.E013": replace(
        "deploy/supervisor/supervisord.conf", "%(ENV_ASGI_WORKERS)s", "%(ENV_DAPHNE_WORKERS)s"
    ),
{%- endif %}
    "stack.E014": replace(SETTINGS, 'URL = "/static/"', 'URL = env("DJANGO_STATIC_URL")'),
    "stack.E016": write_stale_env,
    "stack.E030": set_env("REDIS_URL", "redis://redis:6380/0"),
    "stack.E040": replace(COMPOSE, "    image: redis", '    ports: ["6379"]\n    image: redis'),
}


def test_configs_agree() -> None:
    """deploy/check.py finds no disagreement between this project's config files."""
    result = run_checker(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize("rule", BREAKAGES)
def test_checker_names_exactly_the_broken_rule(project: Path, rule: str) -> None:
    """One edit that makes two files disagree fails the checker with that rule's id alone."""
    assert run_checker(project).returncode == 0
    BREAKAGES[rule](project)
    result = run_checker(project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert set(RULE_ID.findall(result.stdout)) == {rule}, result.stdout


def test_every_shipped_rule_is_broken_above() -> None:
    """Each rule id deploy/check.py can report (but those of files this project lacks) is
    broken once above."""
    rules = set(re.findall(r'"(stack\.E\d{3})"', CHECKER.read_text(encoding="utf-8")))
    absent = {"stack.E013"} if not (PROJECT / "deploy/supervisor").is_dir() else set()
    assert rules - {"stack.E000"} - absent == set(BREAKAGES)


def test_settings_read_by_any_library_are_checked(project: Path) -> None:
    """Names read through another env reader (django-environ's env(), decouple's config(), your
    own helper) are checked like os.environ's."""
    edit = replace(SETTINGS, "import os\n", 'import os\nDEBUG = env.bool("DEBUG")\n')
    edit(project)
    (project / SETTINGS).write_text(
        (project / SETTINGS).read_text(encoding="utf-8")
        + 'CACHE = config("CACHE_URL")\nSENTRY = settings_from["SENTRY_DSN"]\n',
        encoding="utf-8",
    )
    result = run_checker(project)
    assert set(RULE_ID.findall(result.stdout)) == {"stack.E014"}
    assert {"DEBUG", "CACHE_URL", "SENTRY_DSN"} == set(re.findall(r": (\w+) is not", result.stdout))


def test_readers_follow_dotenv_and_compose(tmp_path: Path) -> None:
    """read_env_file and interpolate read what compose reads."""
    checker = load_checker()
    env = {"SET": "x", "EMPTY": ""}
    examples = {
        "${SET}": "x",
        "$SET/$$SET": "x/$SET",
        "${EMPTY:-d}${EMPTY-d}": "d",
        "${UNSET:-d}${UNSET-e}": "de",
        "${SET:?no}${SET:+alt}${UNSET+alt}": "xalt",
    }
    for text, expected in examples.items():
        assert checker.interpolate(text, env) == expected, text
    with pytest.raises(ValueError, match="UNSET"):
        checker.interpolate("${UNSET?set it}", env)
    dotenv = tmp_path / ".env"
    dotenv.write_text("# a comment\nexport A=1\nB = 'two words'\nC=\"3\"\n\n", encoding="utf-8")
    assert checker.read_env_file(dotenv) == {"A": "1", "B": "two words", "C": "3"}
