#!/usr/bin/env bash
# Installs the generated project's own pinned dependencies (Django, channels, daphne, uWSGI, ...)
# into .venv, read from a default bake, so the pins live in one place: the template's pyproject.
# Sourced by scripts/test.sh and scripts/bench.sh after scripts/venv.sh; a no-op when current.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bake_dir=$(mktemp -d)
.venv/bin/cookiecutter --no-input -o "$bake_dir" . >/dev/null
project=$(find "$bake_dir" -mindepth 1 -maxdepth 1 -type d)
deps_stamp=.venv/.project-$(sha256sum "$project/pyproject.toml" | cut -c1-16)
if [ ! -f "$deps_stamp" ]; then
  .venv/bin/python -m pip install --quiet "$project" --group "$project/pyproject.toml:dev"
  touch "$deps_stamp"
fi
rm -rf "$bake_dir"
