"""The generated project's uv.lock: current for every bake, and installable without a compiler.

The template holds one uv.lock with a few Jinja expressions (scripts/lock.sh writes it). Its
content depends on the project's name (uv writes it normalized: `team_chat` -> `team-chat`) and
on process_manager (supervisor is in the `server` group only when it runs the servers), so every
combination of those is baked and checked with `uv lock --locked`, which fails when the lock no
longer matches pyproject.toml. (requires-python comes from the constant `_python_version`: a new
value there fails these tests until scripts/lock.sh has relocked.)
"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import COOKIECUTTER_JSON, TEMPLATE_DIR, require_binary

UV = str(Path(sys.executable).with_name("uv"))
PROCESS_MANAGERS = COOKIECUTTER_JSON["process_manager"]
# Names that land the project's own entry first, in the middle and last among the locked
# packages, and one with underscores uv must normalize (leading, trailing, doubled).
PROJECT_SLUGS = ["aa_chat", "realtime_chat", "zz_chat", "_my__chat_"]
STALE_LOCK = "uv.lock does not match pyproject.toml: run scripts/lock.sh and commit uv.lock"


def uv(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run our venv's uv in `cwd`."""
    return subprocess.run(  # noqa: S603 - our venv's uv
        [UV, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.mark.parametrize("slug", PROJECT_SLUGS)
@pytest.mark.parametrize("process_manager", PROCESS_MANAGERS)
def test_lock_matches_pyproject(bake_once, process_manager: str, slug: str) -> None:
    """`uv lock --locked` accepts the baked lock: every input of it is what the lock records."""
    project = bake_once(process_manager=process_manager, project_slug=slug)
    result = uv("lock", "--locked", cwd=project)
    assert result.returncode == 0, f"{STALE_LOCK}\n{result.stderr}"
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    names = {package["name"] for package in lock["package"]}
    assert {"django", "channels", "daphne", "uwsgi"} <= names
    assert ("supervisor" in names) == (process_manager == "supervisor")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"Django>=5.2.19,<5.3"', '"Django>=5.2,<5.3"'),
        ('"uwsgi>=2.0.31,<2.1"', '"uwsgi>=2.0,<2.1"'),
    ],
    ids=["runtime", "server-group"],
)
def test_a_changed_pin_without_a_relock_fails(bake, old: str, new: str) -> None:
    """Editing a requirement in pyproject.toml without relocking fails `uv lock --locked`, even
    when the locked versions still satisfy the new requirement."""
    project = bake()
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old} is no longer in pyproject.toml: update this test"
    pyproject.write_text(text.replace(old, new), encoding="utf-8")
    result = uv("lock", "--locked", cwd=project)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr


def test_groups_keep_the_compiled_servers_out_of_make_install(bake_once) -> None:
    """uWSGI and supervisor are in `server` only, which the image installs and `make` does not."""
    project = bake_once()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    groups = pyproject["dependency-groups"]
    runtime = " ".join(pyproject["project"]["dependencies"] + groups["dev"]).lower()
    assert "uwsgi" not in runtime
    assert "supervisor" not in runtime
    assert any(item.startswith("uwsgi") for item in groups["server"])
    assert pyproject["tool"]["uv"]["package"] is False  # nothing to build for the project itself
    make = (project / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^install:.*\n\tuv sync --locked\n", make, flags=re.MULTILINE)
    dockerfile = (project / "deploy/Dockerfile").read_text(encoding="utf-8")
    sync = re.search(r"^RUN uv sync (.*)$", dockerfile, flags=re.MULTILINE)
    assert sync, "the Dockerfile no longer installs with uv sync"
    assert set(sync.group(1).split()) >= {"--locked", "--no-dev", "--group", "server"}


def test_make_install_needs_no_compiler(bake, tmp_path: Path) -> None:
    """`make install` from a bake, with a PATH that holds make, uv and Python and nothing else
    (no cc, no gcc), and uv told never to build (UV_NO_BUILD): the runtime and dev tools all
    install from wheels, and the project then passes Django's checks."""
    project = bake()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in {
        "make": require_binary("make"),
        "uv": UV,
        # The interpreter itself, not our venv's link to it: uv makes the project's own venv.
        "python3": str(Path(sys.executable).resolve()),
    }.items():
        (bin_dir / name).symlink_to(target)
    for compiler in ("cc", "gcc", "clang", "c99"):
        assert not (bin_dir / compiler).exists()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    # The system's CA store (as pip uses it) where a proxy re-signs PyPI's certificates.
    env |= {"PATH": str(bin_dir), "UV_NO_BUILD": "1", "UV_PYTHON_DOWNLOADS": "never"}
    env |= {"UV_SYSTEM_CERTS": "1"}
    result = subprocess.run(  # noqa: S603 - the project's own Makefile
        [bin_dir / "make", "install"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    python = project / ".venv/bin/python"
    assert not (project / ".venv/bin/uwsgi").exists()
    check = subprocess.run(  # noqa: S603 - the project's own venv
        [python, "manage.py", "check"],
        cwd=project,
        env={**env, "DJANGO_DEBUG": "1", "REDIS_URL": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (project / ".venv/bin/ruff").exists()
    assert (project / ".venv/bin/pytest").exists()


def test_uv_is_pinned_the_same_everywhere(bake_once) -> None:
    """The image, the generated CI and the template's own tests use one uv version."""
    project = bake_once()
    version = COOKIECUTTER_JSON["_uv_version"]
    dockerfile = (project / "deploy/Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^ARG UV_VERSION=(\S+)$", dockerfile, flags=re.MULTILINE) == [version]
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert re.findall(r"\buv==(\S+)", "\n".join(runs)) == [version]
    template = tomllib.loads((TEMPLATE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"uv=={version}" in template["dependency-groups"]["test"]
