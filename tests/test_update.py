"""A baked project takes template changes in with cruft (hooks/post_gen_project.py links it).

Everything runs as a user would, offline: `cookiecutter gh:example/realtime-django` and
`cruft update` both clone https://github.com/example/realtime-django.git, which a git
`insteadOf` rule (in a private git config) turns into a repository in tmp, made from this
template's working tree.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_DIR

BIN = Path(sys.executable).parent
TEMPLATE_URL = "https://github.com/example/realtime-django.git"
# What cookiecutter needs of the template (the rest is the template's own tooling).
TEMPLATE_PATHS = ("cookiecutter.json", "hooks", "{{cookiecutter.project_slug}}")
SETTINGS = "config/settings.py"
SCP_URL = "git@github.com:example/realtime-django.git"


@dataclass
class Upstream:
    """The template's repository (what GitHub would hold) and the environment that reaches it."""

    repo: Path
    env: dict[str, str]

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
        """Run a command with the offline environment; fail the test on a non-zero exit."""
        result = self.try_run(*args, cwd=cwd)
        assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
        return result

    def try_run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
        """Run a command with the offline environment and return what happened."""
        return subprocess.run(  # noqa: S603 - our own commands on our own files
            [str(arg) for arg in args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def commit(self, message: str) -> str:
        """Commit every change in the template's repository; return the new commit."""
        self.run("git", "add", "--all", cwd=self.repo)
        self.run("git", "commit", "--quiet", "--message", message, cwd=self.repo)
        return self.run("git", "rev-parse", "HEAD", cwd=self.repo).stdout.strip()

    def template_file(self, path: str) -> Path:
        """A file of the generated project, as the template holds it."""
        return self.repo / "{{cookiecutter.project_slug}}" / path


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    """This template's working tree, committed to a repository that TEMPLATE_URL reaches."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    for name in TEMPLATE_PATHS:
        source = TEMPLATE_DIR / name
        if source.is_dir():
            junk = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache", ".venv")
            shutil.copytree(source, repo / name, ignore=junk)
        else:
            shutil.copy2(source, repo / name)
    git_config = tmp_path / "gitconfig"
    git_config.write_text(
        "[user]\n\tname = Test\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
        f'[url "{repo}"]\n\tinsteadOf = {TEMPLATE_URL}\n',
        encoding="utf-8",
    )
    cookiecutter_config = tmp_path / "cookiecutter.yaml"
    cookiecutter_config.write_text(
        f"cookiecutters_dir: {tmp_path / 'cookiecutters'}\nreplay_dir: {tmp_path / 'replay'}\n",
        encoding="utf-8",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_GLOBAL": str(git_config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "COOKIECUTTER_CONFIG": str(cookiecutter_config),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    }
    upstream = Upstream(repo, env)
    upstream.run("git", "init", "--quiet", cwd=repo)
    upstream.commit("The template")
    return upstream


@pytest.fixture
def project(upstream: Upstream, tmp_path: Path) -> Path:
    """A project baked with `cookiecutter gh:...` and committed to its own repository."""
    upstream.run(
        BIN / "cookiecutter",
        "--no-input",
        "--output-dir",
        tmp_path / "projects",
        "gh:example/realtime-django",
        "project_name=Team Chat",
        "http_port=9000",
        cwd=tmp_path,
    )
    project = tmp_path / "projects" / "team_chat"
    upstream.run("git", "init", "--quiet", cwd=project)
    upstream.run("git", "add", "--all", cwd=project)
    upstream.run("git", "commit", "--quiet", "--message", "Baked", cwd=project)
    return project


def strings_in(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return [value] if isinstance(value, str) else []


def assert_linked(project: Path, commit: str, tmp_path: Path) -> None:
    """.cruft.json and .cookiecutter.json name the template's URL and `commit`, and no path."""
    cruft = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert (cruft["template"], cruft["commit"]) == (TEMPLATE_URL, commit)
    assert (recorded["_template"], recorded["_commit"]) == (TEMPLATE_URL, commit)
    assert recorded["project_name"] == cruft["context"]["cookiecutter"]["project_name"]
    for text in strings_in(cruft) + strings_in(recorded):
        assert not text.startswith(("/", "~", "file:")), text
        assert str(tmp_path) not in text, text


def test_bake_is_linked_to_the_template_commit(
    upstream: Upstream, project: Path, tmp_path: Path
) -> None:
    """A plain `cookiecutter gh:...` bake records the template's URL and commit, not a path."""
    head = upstream.run("git", "rev-parse", "HEAD", cwd=upstream.repo).stdout.strip()
    assert_linked(project, head, tmp_path)
    check = upstream.run(BIN / "cruft", "check", cwd=project)
    assert "up to date" in check.stdout


def test_update_brings_template_changes_and_keeps_user_edits(
    upstream: Upstream, project: Path, tmp_path: Path
) -> None:
    """`cruft update` adds the template's new line and file, renders them with the bake's
    answers, and leaves the user's own edit and .env alone."""
    env_file = (project / ".env").read_text(encoding="utf-8")
    with (project / SETTINGS).open("a", encoding="utf-8") as settings:
        settings.write("\n# The user's own setting.\n")
    upstream.run("git", "commit", "--quiet", "--all", "--message", "Mine", cwd=project)

    with upstream.template_file("README.md").open("a", encoding="utf-8") as readme:
        readme.write("A line the template added later.\n")
    upstream.template_file("NOTES.md").write_text(
        "{{ cookiecutter.project_name }} on port {{ cookiecutter.http_port }}.\n", encoding="utf-8"
    )
    new_commit = upstream.commit("A template change")
    assert upstream.try_run(BIN / "cruft", "check", cwd=project).returncode != 0

    upstream.run(BIN / "cruft", "update", "--skip-apply-ask", cwd=project)

    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.endswith("\nA line the template added later.\n")
    assert (project / "NOTES.md").read_text(encoding="utf-8") == "Team Chat on port 9000.\n"
    assert (project / SETTINGS).read_text("utf-8").endswith("\n# The user's own setting.\n")
    assert (project / ".env").read_text(encoding="utf-8") == env_file
    assert_linked(project, new_commit, tmp_path)
    assert "up to date" in upstream.run(BIN / "cruft", "check", cwd=project).stdout


def test_conflicting_change_is_reported_and_both_sides_kept(
    upstream: Upstream, project: Path
) -> None:
    """When the user and the template change the same lines, `cruft update` says so and leaves
    both versions in conflict markers, as a git merge does, instead of dropping either."""
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write("The user's closing line.\n")
    upstream.run("git", "commit", "--quiet", "--all", "--message", "Mine", cwd=project)
    with upstream.template_file("README.md").open("a", encoding="utf-8") as readme:
        readme.write("The template's closing line.\n")
    upstream.commit("A conflicting template change")

    result = upstream.run(BIN / "cruft", "update", "--skip-apply-ask", cwd=project)

    assert "Applied patch to 'README.md' with conflicts" in result.stderr
    unmerged = upstream.run("git", "diff", "--name-only", "--diff-filter=U", cwd=project)
    assert unmerged.stdout.split() == ["README.md"]
    text = (project / "README.md").read_text(encoding="utf-8")
    assert "<<<<<<< " in text
    assert "The user's closing line." in text
    assert "The template's closing line." in text


@pytest.mark.parametrize(
    ("origin", "linked"),
    [
        ("https://me:ghp_secret@github.com/example/realtime-django.git", TEMPLATE_URL),
        (SCP_URL, SCP_URL),
        ("/srv/git/realtime-django.git", None),
    ],
    ids=["https-with-token", "scp-style", "a-path"],
)
def test_bake_from_a_checkout_records_its_origin_but_no_secret_or_path(
    upstream: Upstream, tmp_path: Path, origin: str, linked: str | None
) -> None:
    """Baked from a clean local checkout, the project links to the checkout's origin, without
    the user name or token an https URL may carry; an origin that is a path links nothing."""
    upstream.run("git", "remote", "add", "origin", origin, cwd=upstream.repo)
    out = tmp_path / "out"
    upstream.run(BIN / "cookiecutter", "--no-input", "-o", out, upstream.repo, cwd=tmp_path)
    project = out / "realtime_chat"
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    if linked is None:
        assert not (project / ".cruft.json").exists()
        assert "_template" not in recorded
    else:
        cruft = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
        assert cruft["template"] == recorded["_template"] == linked
    assert "secret" not in (project / ".cookiecutter.json").read_text(encoding="utf-8")
