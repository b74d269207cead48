"""Finish the new project: drop unselected files, write .env, prove that the configs agree.

Runs inside the new project's folder. A failure exits 1, and cookiecutter then deletes the
project, so a bake either succeeds whole or leaves nothing. Stdlib only (plus PyYAML, which
cookiecutter installs, for the checker).
"""

import json
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
}

SECRET_KEY_LINE: Final = "DJANGO_SECRET_KEY="
# Where the bake happened on the baking machine: meaningless in the project's repository, and
# a path of someone's disk in every clone of it.
MACHINE_KEYS: Final = ("_output_dir", "_repo_dir", "_checkout")


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


def run_config_checker() -> None:
    """Run the project's own deploy/check.py; its failure fails the bake."""
    result = subprocess.run([sys.executable, "deploy/check.py"], check=False)  # noqa: S603
    if result.returncode != 0:
        print(
            "ERROR: deploy/check.py found configs that disagree (above); nothing was generated.",
            file=sys.stderr,
        )
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
    run_config_checker()
    print_next_steps(ANSWERS)


if __name__ == "__main__":
    main()
