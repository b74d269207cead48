"""Finish the new project: drop unselected files, write .env, prove that the configs agree.

Runs inside the new project's folder. A failure exits 1, and cookiecutter then deletes the
project, so a bake either succeeds whole or leaves nothing. Stdlib only (plus PyYAML, which
cookiecutter installs, for the checks). The config checks run the template's
hooks/bake_checks.py, found through `_repo_dir`: it runs the project's deploy/check.py and the
rules that file does not ship.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

ANSWERS: Final = json.loads(r"""{{ cookiecutter | tojson }}""")

# (option, value) -> paths that only a project with another value needs.
REMOVE_WHEN: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("process_manager", "compose"): ("deploy/supervisor",),
    ("https", "none"): (
        "deploy/tls_check.py",
        "deploy/tests/test_tls_check.py",
        "deploy/acme.py",
        "deploy/tests/test_acme.py",
        "deploy/nginx/reload-on-new-certificate.sh",
    ),
    ("https", "own_certificate"): (
        "deploy/acme.py",
        "deploy/tests/test_acme.py",
        "deploy/nginx/reload-on-new-certificate.sh",
    ),
}

SECRET_KEY_LINE: Final = "DJANGO_SECRET_KEY="
# Where the bake happened on the baking machine: meaningless in the project's repository, and
# a path of someone's disk in every clone of it.
MACHINE_KEYS: Final = ("_output_dir", "_repo_dir", "_checkout")
# The template's own checks of a bake: deploy/check.py's rules and those it does not ship.
BAKE_CHECKS: Final = "hooks/bake_checks.py"


def remove_unselected_paths(answers: dict) -> None:
    """Delete every path whose (option, value) row matches the answers."""
    for (option, value), paths in REMOVE_WHEN.items():
        if answers[option] != value:
            continue
        for name in paths:
            path = Path(name)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def write_env_file() -> None:
    """Write .env from .env.example, with a fresh secret key no other bake shares."""
    lines = Path(".env.example").read_text(encoding="utf-8").splitlines()
    secret = secrets.token_urlsafe(50)
    lines = [
        SECRET_KEY_LINE + secret if line.startswith(SECRET_KEY_LINE) else line for line in lines
    ]
    env_file = Path(".env")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_file.chmod(0o600)


def record_answers_only() -> None:
    """Keep the answers in .cookiecutter.json, without the baking machine's paths."""
    path = Path(".cookiecutter.json")
    answers = json.loads(path.read_text(encoding="utf-8"))
    kept = {key: value for key, value in answers.items() if key not in MACHINE_KEYS}
    path.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")


def link_to_template(answers: dict) -> None:
    """Record the template's git address and commit in .cruft.json, for `cruft update`.

    Only a plain `cookiecutter` bake has `_repo_dir` (the template's checkout); cruft's own
    renders have `_commit` instead, and cruft writes .cruft.json itself. .cookiecutter.json gets
    the same `_template` and `_commit` as cruft's renders, so an update's diff applies to it.
    A folder, a changed checkout or an origin that is a path is not recorded: a path means
    nothing in a clone of the project (README.md, "Updating from the template", links it later).
    """
    import re
    from urllib.parse import urlsplit

    repo_dir = answers.get("_repo_dir")
    if not repo_dir or "_commit" in answers:
        return

    def git(*args: str) -> str:
        command = ["git", "-C", repo_dir, *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        except OSError:  # no git
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    path = Path(".cookiecutter.json")
    recorded = json.loads(path.read_text(encoding="utf-8"))
    url = commit = ""
    is_checkout = Path(repo_dir).is_absolute() and git("rev-parse", "--show-toplevel") == str(
        Path(repo_dir).resolve()
    )
    if is_checkout and not git("status", "--porcelain"):
        url, commit = git("config", "--get", "remote.origin.url"), git("rev-parse", "HEAD")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):  # no user name or token in a committed file
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    elif parts.scheme not in ("ssh", "git") and not re.match(r"[\w.-]+@[\w.-]+:", url):
        url = ""  # a path, or nothing
    if url and commit:
        recorded |= {"_template": url, "_commit": commit}
    elif not re.match(r"(?!file:)[\w+.@-]{2,}:", recorded.get("_template", "")):
        recorded.pop("_template", None)  # a folder on this machine
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not (url and commit):
        print("Not linked to a template repository: README.md says how to link it for updates.")
        return
    state = {
        "template": url,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": recorded},
        "directory": None,
        "skip": [".env"],
    }
    Path(".cruft.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def template_dir(answers: dict) -> Path | None:
    """The template's folder, or None where it cannot be found.

    cookiecutter runs this hook in the new project's folder while its own process works in the
    template's folder (Linux: /proc/PID/cwd). `_repo_dir` names that folder for a plain bake, but
    relative to where cookiecutter was started (the shell's PWD); cruft's renders have none.
    """
    repo_dir = Path(answers.get("_repo_dir") or ".")
    candidates = (
        repo_dir,
        Path(f"/proc/{os.getppid()}/cwd"),
        Path(os.environ.get("PWD", ".")) / repo_dir,
    )
    found = (path for path in candidates if (path / BAKE_CHECKS).is_file())
    return next((path.resolve() for path in found), None)


def run_config_checks(answers: dict) -> None:
    """Run deploy/check.py's rules and the template's bake-time ones; a problem fails the bake."""
    template = template_dir(answers)
    if template is None and "_repo_dir" not in answers:
        # cruft renders the template twice per update, into throwaway folders, without telling
        # where the template is: the user's own bake was checked, and `make test` checks again.
        print(f"Not running {BAKE_CHECKS}: the template's folder is unknown (a cruft render).")
        return
    if template is None:
        print(
            f"ERROR: cannot find the template's {BAKE_CHECKS} from {answers['_repo_dir']!r}; "
            "bake with an absolute template path. Nothing was generated.",
            file=sys.stderr,
        )
        sys.exit(1)
    result = subprocess.run([sys.executable, str(template / BAKE_CHECKS), "."], check=False)  # noqa: S603
    if result.returncode != 0:
        print("ERROR: the configs disagree (above); nothing was generated.", file=sys.stderr)
        sys.exit(1)


def print_next_steps(answers: dict) -> None:
    """Tell the user how to start what they just made."""
    print(
        f"\nCreated {answers['project_slug']}/. Next:\n"
        f"  cd {answers['project_slug']}\n"
        "  docker compose up --build       # the whole stack\n"
        "  make dev                        # or: no Docker, runserver on http://127.0.0.1:8000/\n"
    )


def main() -> None:
    """The steps, in order."""
    remove_unselected_paths(ANSWERS)
    write_env_file()
    record_answers_only()
    link_to_template(ANSWERS)
    run_config_checks(ANSWERS)
    print_next_steps(ANSWERS)


if __name__ == "__main__":
    main()
