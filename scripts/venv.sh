#!/usr/bin/env bash
# Creates .venv with the template's tooling (pyproject.toml, group "test", and sslyze in .venv/sslyze);
# a no-op when it is current.
# Sourced by scripts/bake.sh, scripts/test.sh and scripts/bench.sh (which adds group "bench").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  python3 -m venv .venv
  # pip >= 25.1 installs dependency groups (--group).
  .venv/bin/python -m pip install --quiet --upgrade "pip>=25.1"
  .venv/bin/python -m pip install --quiet --group test
  # sslyze: its own venv (pyproject.toml, group "tls-scan", says why).
  python3 -m venv .venv/sslyze
  .venv/sslyze/bin/python -m pip install --quiet --upgrade "pip>=25.1"
  .venv/sslyze/bin/python -m pip install --quiet --group tls-scan
  touch "$stamp"
fi
