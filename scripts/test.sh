#!/usr/bin/env bash
# The test suite: set up, lint, run pytest. "No tests collected" (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || exit 1
VENV="${SYNTHAUG_VENV:-.venv}"
"$VENV/bin/ruff" check src tests benchmarks || exit 1
"$VENV/bin/mypy" src/synthaug || exit 1
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
