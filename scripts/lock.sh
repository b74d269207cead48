#!/usr/bin/env bash
# Relocks the generated project's dependencies into {{cookiecutter.project_slug}}/uv.lock
# (scripts/lock.py says how):
#   scripts/lock.sh              after editing {{cookiecutter.project_slug}}/pyproject.toml
#   scripts/lock.sh --upgrade    every package to the newest version pyproject.toml allows
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
exec .venv/bin/python scripts/lock.py "$@"
