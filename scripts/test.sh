#!/usr/bin/env bash
# Runs the template's whole test suite, installing what it needs first:
#   - .venv with the template's tooling (scripts/venv.sh);
#   - the generated project's own pinned dependencies (scripts/project-deps.sh);
#   - the real Docker Compose v2 CLI, from ../shared/tools when it is there.
# System servers (nginx, redis-server, chromium, chromedriver, envsubst) come from apt (.ci/run),
# and so does the Docker engine the container tests drive (.ci/run starts dockerd). Without them
# those tests skip, unless REQUIRE_E2E=1, which makes a missing one a failure.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
source scripts/project-deps.sh

installer=../shared/tools/install-compose-v2
if [ ! -x .venv/bin/docker-compose ] && [ -f "$installer" ]; then
  sh "$installer" "${XDG_CACHE_HOME:-$HOME/.cache}/compose-v2" >/dev/null
  ln -sf "${XDG_CACHE_HOME:-$HOME/.cache}/compose-v2/cli-plugins/docker-compose" .venv/bin/docker-compose
fi

export PATH="$PWD/.venv/bin:$PATH"
# Fast tests on both cores; then the native full stack alone, so its servers have the machine to
# themselves; then the same project under the real `docker compose` (tests/containers/README.md).
.venv/bin/python -m pytest -m "not e2e and not containers" -n 2 "$@"
.venv/bin/python -m pytest -m e2e "$@"
.venv/bin/python -m pytest -m containers "$@"
