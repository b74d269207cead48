"""Relock the generated project's dependencies: writes {{cookiecutter.project_slug}}/uv.lock.

    scripts/lock.sh              after editing the template's pyproject.toml: lock what changed
    scripts/lock.sh --upgrade    move every package to the newest version pyproject.toml allows

uv locks a bake, not the template (Jinja is not TOML), so this bakes each answer that changes the
lock's content (process_manager: supervisor is in the `server` group only when it runs the
servers), locks the first with uv, copies that lock to the others and relocks them (same
versions, fewer packages), then merges the locks into one template: the lines one answer alone
needs inside `{% if %}`, the project's name and requires-python as the variables they come from.
tests/test_lock.py proves that every bake's lock is current (`uv lock --locked`).
"""

import difflib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
LOCK_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "uv.lock"
BIN = Path(sys.executable).parent
# The answer whose value changes which packages are locked; its first value locks the most.
VARIANT = ("process_manager", "supervisor", "compose")
# A Jinja comment: gone from every bake, so the baked lock is exactly what uv wrote.
HEADER = "{# Written by scripts/lock.sh (scripts/lock.py): rerun it, do not edit by hand. -#}"


def bake(out: Path, **answers: str) -> Path:
    """Bake the template with the defaults and `answers` into `out`; return the project."""
    extra = [f"{key}={value}" for key, value in answers.items()]
    subprocess.run(  # noqa: S603 - our venv's cookiecutter
        [str(BIN / "cookiecutter"), "--no-input", "-o", str(out), str(TEMPLATE_DIR), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return next(path for path in out.iterdir() if path.is_dir())


def lock(project: Path, *args: str) -> list[str]:
    """Run `uv lock` in `project`; return the lock's lines."""
    subprocess.run([str(BIN / "uv"), "lock", "--project", str(project), *args], check=True)  # noqa: S603
    return (project / "uv.lock").read_text(encoding="utf-8").splitlines()


def merge(first: list[str], other: list[str], condition: str) -> list[str]:
    """One template of both locks: `first` where `condition` holds, `other` where it does not.

    Each tag ends the line before its block, so no tag adds or strips a line (cookiecutter's
    Jinja keeps whitespace as written): `prev{% if c %}` / block / `last{% endif %}` / next.
    """
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, other, first, autojunk=False)
    for tag, other_start, other_end, first_start, first_end in matcher.get_opcodes():
        if tag == "equal":
            out += first[first_start:first_end]
            continue
        if not out:
            raise SystemExit("the locks differ on their first line: cannot template that")
        out[-1] += f"{{% if {condition} %}}"
        out += first[first_start:first_end]
        if other_end > other_start:
            out[-1] += "{% else %}"
            out += other[other_start:other_end]
        out[-1] += "{% endif %}"
    return out


def replace_once(lines: list[str], old: str, new: str) -> list[str]:
    """`lines` with the one line equal to `old` replaced by `new`."""
    if lines.count(old) != 1:
        raise SystemExit(f"expected exactly one line {old!r} in the lock")
    return [new if line == old else line for line in lines]


def main(args: list[str]) -> int:
    option, first_value, other_value = VARIANT
    with tempfile.TemporaryDirectory() as tmp:
        first = bake(Path(tmp) / first_value, **{option: first_value})
        first_lines = lock(first, *args)
        other = bake(Path(tmp) / other_value, **{option: other_value})
        shutil.copy(first / "uv.lock", other / "uv.lock")
        other_lines = lock(other)
        pyproject = tomllib.loads((first / "pyproject.toml").read_text(encoding="utf-8"))
    lines = merge(first_lines, other_lines, f'cookiecutter.{option} == "{first_value}"')
    project = pyproject["project"]
    lines = replace_once(
        lines, f'name = "{project["name"]}"', 'name = "{{ cookiecutter.__dist_name }}"'
    )
    lines = replace_once(
        lines,
        f'requires-python = "{project["requires-python"]}"',
        'requires-python = ">={{ cookiecutter._python_version }}"',
    )
    LOCK_TEMPLATE.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    print(f"wrote {LOCK_TEMPLATE.relative_to(TEMPLATE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
