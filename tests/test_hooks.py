"""The hooks: bad answers are refused before anything is written; post-gen finishes the job."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_DIR, Bake

COOKIECUTTER = str(Path(sys.executable).with_name("cookiecutter"))
HOSTILE_NAME = 'O\'Brien "Chat" \\ Ünïcode'


def run_cookiecutter(output_dir: Path, *answers: str) -> subprocess.CompletedProcess:
    """Bake from the command line with --no-input, as a user would."""
    return subprocess.run(  # noqa: S603 - our own venv's cookiecutter
        [COOKIECUTTER, "--no-input", "-o", str(output_dir), str(TEMPLATE_DIR), *answers],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


BAD_ANSWERS = [
    # (answers, field named in the error, a word of the fix)
    (["project_name= "], "project_name", "project_name="),
    (["project_slug=My-Chat"], "project_slug='My-Chat'", "lowercase Python identifier"),
    (["project_slug=9lives"], "project_slug='9lives'", "lowercase Python identifier"),
    (["project_slug=class"], "project_slug='class'", "keyword"),
    (["project_slug=match"], "project_slug='match'", "keyword"),
    (["project_slug=django"], "project_slug='django'", "shadow"),
    (["project_slug=channels"], "project_slug='channels'", "shadow"),
    (["project_slug=daphne"], "project_slug='daphne'", "shadow"),
    (["project_slug=redis"], "project_slug='redis'", "shadow"),
    (["project_slug=chat"], "project_slug='chat'", "shadow"),
    (["project_slug=config"], "project_slug='config'", "shadow"),
    (["project_slug=deploy"], "project_slug='deploy'", "shadow"),
    (["project_slug=tests"], "project_slug='tests'", "shadow"),
    (["project_slug=json"], "project_slug='json'", "shadow"),
    (["project_slug=test"], "project_slug='test'", "shadow"),
    (["project_slug=select"], "project_slug='select'", "shadow"),
    (["project_slug=" + "a" * 51], "project_slug='" + "a" * 20 + "'...", "at most 50"),
    (["http_port=abc"], "http_port='abc'", "1 to 65535"),
    (["wsgi_port=80a"], "wsgi_port='80a'", "1 to 65535"),
    (["asgi_port=0"], "asgi_port='0'", "1 to 65535"),
    (["http_port=65536"], "http_port='65536'", "1 to 65535"),
    (["http_port=-1"], "http_port='-1'", "1 to 65535"),
    (["wsgi_port=8000"], "wsgi_port=8000", "must all differ"),
    (["asgi_port=8001"], "asgi_port=8001", "must all differ"),
    (["http_port=6379"], "http_port=6379", "Redis"),
    (["https_port=8001"], "https_port=8001", "must all differ"),
    (["https_port=6379"], "https_port=6379", "Redis"),
    (["https_port=0"], "https_port='0'", "1 to 65535"),
    (["domain_name=bad_domain!"], "domain_name='bad_domain!'", "valid host name"),
    (["domain_name=-lead.example.com"], "domain_name='-lead.example.com'", "valid host name"),
    (["domain_name=a..b"], "domain_name='a..b'", "valid host name"),
    (["domain_name=http://x.com"], "domain_name='http://x.com'", "valid host name"),
    (["asgi_workers=0"], "asgi_workers='0'", "1 to 32"),
    (["asgi_workers=33"], "asgi_workers='33'", "1 to 32"),
    (["asgi_workers=two"], "asgi_workers='two'", "1 to 32"),
]


@pytest.mark.parametrize(
    ("answers", "field", "fix"), BAD_ANSWERS, ids=[" ".join(a[0]) for a in BAD_ANSWERS]
)
def test_bad_answer_is_refused_and_nothing_is_written(
    tmp_path: Path, answers: list[str], field: str, fix: str
) -> None:
    """A bad answer exits non-zero, names the field and the fix, and leaves the -o folder empty."""
    result = run_cookiecutter(tmp_path, *answers)
    assert result.returncode != 0
    assert field in result.stderr
    assert fix in result.stderr
    assert "Nothing was generated" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_bad_answer_is_reported_at_once(tmp_path: Path) -> None:
    """All failing rules are printed in one run, one ERROR line each."""
    result = run_cookiecutter(
        tmp_path, "project_slug=json", "http_port=abc", "domain_name=x_y", "asgi_workers=99"
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert [e.split("=")[0] for e in errors] == [
        "ERROR: project_slug",
        "ERROR: domain_name",
        "ERROR: http_port",
        "ERROR: asgi_workers",
    ]
    assert list(tmp_path.iterdir()) == []


def test_unknown_process_manager_is_refused_by_cookiecutter(tmp_path: Path) -> None:
    """cookiecutter itself refuses a process_manager outside the choices, even with --no-input."""
    result = run_cookiecutter(tmp_path, "process_manager=systemd")
    assert result.returncode != 0
    assert "process_manager" in result.stderr
    assert "supervisor" in result.stderr
    assert "compose" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_letsencrypt_for_localhost_is_refused(tmp_path: Path) -> None:
    """https=letsencrypt with the default domain (localhost) is refused before anything is
    written, naming the field and the fixes; with a public name it bakes."""
    result = run_cookiecutter(tmp_path, "https=letsencrypt")
    assert result.returncode != 0
    assert "domain_name='localhost' cannot get a Let's Encrypt certificate" in result.stderr
    assert list(tmp_path.iterdir()) == []
    result = run_cookiecutter(tmp_path, "https=letsencrypt", "domain_name=chat.example.com")
    assert result.returncode == 0, result.stderr


def load_pre_gen_hook(answers: dict) -> dict:
    """The pre-generation hook rendered with `answers` as cookiecutter renders it, executed
    (not run: no main()) so that its rules can be called one by one."""
    source = (TEMPLATE_DIR / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8")
    rendered = source.replace("{{ cookiecutter | tojson }}", json.dumps(answers))
    namespace: dict = {"__name__": "pre_gen_project"}
    exec(compile(rendered, "pre_gen_project.py", "exec"), namespace)  # noqa: S102 - our hook
    return namespace


@pytest.mark.parametrize(
    ("domain", "refused"),
    [
        ("localhost", True),
        ("chat.localhost", True),
        ("intranet", True),
        ("chat.example.com", False),
        ("chat.example.com.", False),
    ],
)
def test_letsencrypt_needs_a_public_domain(domain: str, refused: bool) -> None:
    """The rule for https=letsencrypt: a name no CA can reach is
    refused with the field, the value and both fixes; other choices accept it."""
    answers = {"domain_name": domain, "https": "letsencrypt"}
    rule = load_pre_gen_hook(answers)["check_domain_can_get_a_certificate"]
    problem = rule(answers)
    assert (problem is not None) == refused
    if refused:
        assert f"domain_name={domain!r}" in problem
        assert "domain_name=chat.example.com" in problem
        assert "https=own_certificate" in problem
    assert rule({"domain_name": domain, "https": "own_certificate"}) is None


def test_good_non_default_answers_bake(tmp_path: Path) -> None:
    """Valid unusual answers (high ports, a sub-domain, 32 workers) bake without complaint."""
    result = run_cookiecutter(
        tmp_path,
        "project_name=Team Chat",
        "domain_name=chat.example.co.uk",
        "http_port=65535",
        "wsgi_port=1",
        "asgi_port=9000",
        "asgi_workers=32",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "team_chat" / "manage.py").is_file()


def test_hostile_name_bakes_into_valid_files(bake: Bake) -> None:
    """Quotes, a backslash and non-ASCII letters survive into valid Python, TOML, YAML and HTML."""
    import json
    import tomllib

    import yaml

    project = bake(project_name=HOSTILE_NAME, description=HOSTILE_NAME)
    assert project.name == "o_brien_chat_unicode"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == HOSTILE_NAME
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["project_name"] == HOSTILE_NAME
    yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert HOSTILE_NAME in readme


def test_env_file_has_a_fresh_secret_on_every_bake(bake: Bake) -> None:
    """.env gets a new 50+ character secret each bake, is private and git-ignored."""

    def secret(project: Path) -> str:
        text = (project / ".env").read_text(encoding="utf-8")
        match = re.search(r"^DJANGO_SECRET_KEY=(.*)$", text, re.MULTILINE)
        assert match
        return match.group(1)

    first, second = bake(), bake()
    assert len(secret(first)) >= 50
    assert secret(first) != secret(second)
    assert "change-me" not in secret(first)
    assert (first / ".env").stat().st_mode & 0o077 == 0
    assert ".env" in (first / ".gitignore").read_text(encoding="utf-8").splitlines()


def load_post_gen_hook() -> dict:
    """Render nothing, just read the REMOVE_WHEN table out of the post-generation hook's source."""
    tree = ast.parse((TEMPLATE_DIR / "hooks" / "post_gen_project.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "REMOVE_WHEN":
            return ast.literal_eval(node.value)
    raise AssertionError("REMOVE_WHEN not found in hooks/post_gen_project.py")


REMOVE_WHEN = load_post_gen_hook()


def test_remove_table_names_only_paths_the_template_has() -> None:
    """Every path in REMOVE_WHEN exists in the template, so a rename cannot silently break it."""
    project_dir = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    for paths in REMOVE_WHEN.values():
        for path in paths:
            assert (project_dir / path).exists(), path


@pytest.mark.parametrize(
    ("process_manager", "https"),
    [("supervisor", "own_certificate"), ("compose", "none"), ("compose", "letsencrypt")],
)
def test_removed_paths_match_the_table(bake: Bake, process_manager: str, https: str) -> None:
    """After a bake, each table path is absent exactly when a row naming it matches the
    answers (a path only one choice of several needs is named in the others' rows)."""
    project = bake(process_manager=process_manager, https=https, domain_name="chat.example.com")
    answers = {"process_manager": process_manager, "https": https}
    removed = {
        path
        for (option, value), paths in REMOVE_WHEN.items()
        if answers[option] == value
        for path in paths
    }
    for path in {path for paths in REMOVE_WHEN.values() for path in paths}:
        assert (project / path).exists() == (path not in removed), path


def test_long_project_name_bakes_with_a_short_slug(tmp_path: Path) -> None:
    """The slug derived from a 300-character name is cut at a word to the slug's limit."""
    result = run_cookiecutter(tmp_path, "project_name=" + "Chat " * 60)
    assert result.returncode == 0, result.stderr
    (project,) = tmp_path.iterdir()
    assert project.name == "_".join(["chat"] * 10)


def test_recorded_answers_hold_no_path_of_the_baking_machine(bake: Bake, tmp_path: Path) -> None:
    """.cookiecutter.json keeps the answers, not where the bake ran nor the template's folder:
    `_template` is the template's git URL when the bake is linked (.cruft.json), else absent."""
    project = bake(project_name="Recorded")
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert recorded["project_name"] == "Recorded"
    assert not {"_output_dir", "_repo_dir", "_checkout"} & set(recorded)
    assert str(project.parent) not in json.dumps(recorded)
    assert str(TEMPLATE_DIR) not in json.dumps(recorded)
    cruft = project / ".cruft.json"
    if cruft.exists():  # a clean checkout with an origin URL, as in CI
        linked = json.loads(cruft.read_text(encoding="utf-8"))
        assert recorded["_template"] == linked["template"]
        assert str(TEMPLATE_DIR) not in json.dumps(linked)
    else:
        assert "_template" not in recorded


def run_cookiecutter_as_version(tmp_path: Path, version: str) -> subprocess.CompletedProcess:
    """Bake with the defaults while the hooks see `version` as cookiecutter's installed version
    (a dist-info on PYTHONPATH, which the hook's interpreter inherits and finds first)."""
    dist_info = tmp_path / "site" / f"cookiecutter-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: cookiecutter\nVersion: {version}\n", encoding="utf-8"
    )
    (tmp_path / "out").mkdir()
    return subprocess.run(  # noqa: S603 - our own venv's cookiecutter
        [COOKIECUTTER, "--no-input", "-o", str(tmp_path / "out"), str(TEMPLATE_DIR)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )


@pytest.mark.parametrize("version", ["1.7.3", "2.2.0"])
def test_too_old_cookiecutter_is_refused_with_the_upgrade(tmp_path: Path, version: str) -> None:
    """A cookiecutter older than 2.2.3 is refused before anything is written, with both versions
    and the upgrade command in the message."""
    result = run_cookiecutter_as_version(tmp_path, version)
    assert result.returncode != 0
    assert f"ERROR: cookiecutter {version} is installed" in result.stderr
    assert "needs cookiecutter 2.2.3 or newer" in result.stderr
    assert "pipx upgrade cookiecutter" in result.stderr
    assert "pip install -U cookiecutter" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("version", ["2.2.3", "2.10.0"])
def test_recent_cookiecutter_is_accepted(tmp_path: Path, version: str) -> None:
    """2.2.3 and later bake (versions compare as numbers: 2.10 is newer than 2.2)."""
    result = run_cookiecutter_as_version(tmp_path, version)
    assert result.returncode == 0, result.stderr
    assert "is installed, but" not in result.stderr


def test_bake_from_a_relative_template_path_runs_the_bake_checks(tmp_path: Path) -> None:
    """`cookiecutter <relative path>` (a relative `_repo_dir`): post-gen still finds the
    template's hooks/bake_checks.py and runs it, with the shell's folder unknown too."""
    for env in ({**os.environ, "PWD": str(TEMPLATE_DIR.parent)}, {"PATH": os.environ["PATH"]}):
        output = tmp_path / str(len(env))
        result = subprocess.run(  # noqa: S603 - our own venv's cookiecutter
            [COOKIECUTTER, "--no-input", "-o", str(output), TEMPLATE_DIR.name],
            cwd=TEMPLATE_DIR.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "hooks/bake_checks.py: ok" in result.stdout


def test_a_bake_time_rule_fails_the_bake_and_leaves_nothing(tmp_path: Path) -> None:
    """A template whose nginx serves static files from a folder no volume fills (stack.E006, a
    rule deploy/check.py does not ship) fails to bake, names the rule, and writes nothing."""
    template = tmp_path / "template"
    skipped = shutil.ignore_patterns(".git", ".venv", "*cache*", "out", "benchmarks")

    def ignore(folder: str, names: list[str]) -> set[str]:
        """What the copy leaves out: tooling, and the template's tests (not the project's)."""
        own_tests = {"tests"} & set(names) if Path(folder) == TEMPLATE_DIR else set()
        return set(skipped(folder, names)) | own_tests

    shutil.copytree(TEMPLATE_DIR, template, ignore=ignore)
    nginx = template / "{{cookiecutter.project_slug}}/deploy/nginx/templates/default.conf.template"
    text = nginx.read_text(encoding="utf-8")
    nginx.write_text(text.replace("alias ${NGINX_STATIC_ROOT}/;", "alias /var/www/static/;"))
    output = tmp_path / "out"
    result = subprocess.run(  # noqa: S603 - our own venv's cookiecutter
        [COOKIECUTTER, "--no-input", "-o", str(output), str(template)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "stack.E006 " in result.stdout
    assert "the configs disagree" in result.stderr
    assert not output.exists() or list(output.iterdir()) == []
