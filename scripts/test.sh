#!/usr/bin/env bash
# Runs the template's whole test suite, installing what it needs first:
#   - .venv with the template's tooling (scripts/venv.sh);
#   - the generated project's own pinned dependencies, read from a default bake (one list of pins);
#   - the real Docker Compose v2 parser (no engine), from ../shared/tools when it is there.
# System servers (nginx, redis-server, chromium, chromedriver, envsubst) come from apt (.ci/run).
# Without them the full-stack tests skip, unless REQUIRE_E2E=1, which makes a missing one a failure.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh

bake_dir=$(mktemp -d)
trap 'rm -rf "$bake_dir"' EXIT
.venv/bin/cookiecutter --no-input -o "$bake_dir" . >/dev/null
project=$(find "$bake_dir" -mindepth 1 -maxdepth 1 -type d)
deps_stamp=.venv/.project-$(sha256sum "$project/pyproject.toml" | cut -c1-16)
if [ ! -f "$deps_stamp" ]; then
  .venv/bin/python -m pip install --quiet "$project" --group "$project/pyproject.toml:dev"
  touch "$deps_stamp"
fi

installer=../shared/tools/install-compose-v2
if [ ! -x .venv/bin/docker-compose ] && [ -f "$installer" ]; then
  sh "$installer" "${XDG_CACHE_HOME:-$HOME/.cache}/compose-v2" >/dev/null
  ln -sf "${XDG_CACHE_HOME:-$HOME/.cache}/compose-v2/cli-plugins/docker-compose" .venv/bin/docker-compose
fi

export PATH="$PWD/.venv/bin:$PATH"
# Fast tests on both cores, then the full stack alone, so its servers have the machine to themselves.
.venv/bin/python -m pytest -m "not e2e" -n 2 "$@"
.venv/bin/python -m pytest -m e2e "$@"
