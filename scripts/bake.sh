#!/usr/bin/env bash
# Bakes a project from this template with the defaults, as a new user would:
#   scripts/bake.sh                        -> out/realtime_chat
#   scripts/bake.sh process_manager=compose   (any answer=value overrides a default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
exec .venv/bin/cookiecutter --no-input --overwrite-if-exists -o "${OUT:-out}" . "$@"
