#!/usr/bin/env bash
# Runs the benchmarks (benchmarks/README.md): bakes the defaults, starts the stack, loads it on
# 127.0.0.1 and prints a Markdown table that names the target it measured (also
# benchmarks/results/latest.{json,md}, or latest-containers.{json,md}).
#   scripts/bench.sh                        the full run, natively, about 30 minutes on 2 cores
#   scripts/bench.sh --quick                a smoke run, about 4 minutes
#   scripts/bench.sh --target containers    the same stack under `docker compose up` (the image's
#                                           Python and nginx, Docker's network); with --quick,
#                                           about 3 minutes once the images are built
# The native target needs nginx, redis-server and wrk from apt (.ci/run installs them); the
# containers target needs wrk, a Docker engine and Compose v2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
source scripts/project-deps.sh
# The benchmark-only tools (pyproject.toml, group "bench") on top of venv.sh's group "test".
bench_stamp=.venv/.installed-bench-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$bench_stamp" ]; then
  .venv/bin/python -m pip install --quiet --group bench
  touch "$bench_stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python benchmarks/run.py "$@"
