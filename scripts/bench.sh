#!/usr/bin/env bash
# Runs the benchmarks (benchmarks/README.md): bakes the defaults, starts the stack natively,
# loads it on 127.0.0.1 and prints a Markdown table (also benchmarks/results/latest.{json,md}).
#   scripts/bench.sh            the full run, about 10 minutes on 2 cores
#   scripts/bench.sh --quick    a 2-minute smoke run
# Needs nginx, redis-server and wrk from apt (.ci/run installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
source scripts/project-deps.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python benchmarks/run.py "$@"
