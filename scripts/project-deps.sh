#!/usr/bin/env bash
# Installs the generated project's locked dependencies into .venv: its uv.lock (every version and
# hash), the runtime plus the `server` (uWSGI, supervisor) and `dev` groups, read from a default
# bake. So the template's tests run exactly what the project's image and its users install, and
# the pins live in one place (scripts/lock.sh writes the lock).
# Sourced by scripts/test.sh and scripts/bench.sh after scripts/venv.sh; a no-op when current.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bake_dir=$(mktemp -d)
.venv/bin/cookiecutter --no-input -o "$bake_dir" . >/dev/null
project=$(find "$bake_dir" -mindepth 1 -maxdepth 1 -type d)
deps_stamp=.venv/.project-$(sha256sum "$project/uv.lock" | cut -c1-16)
if [ ! -f "$deps_stamp" ]; then
  # --locked: a lock that no longer matches the bake's pyproject.toml fails here, before any test.
  .venv/bin/uv export --quiet --locked --project "$project" --group server --group dev \
    --no-emit-project --format requirements-txt \
    | .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r /dev/stdin
  touch "$deps_stamp"
fi
rm -rf "$bake_dir"
