#!/usr/bin/env bash
# The main job: set up, then run the quickstart study into runs/quickstart (its first stage is
# the data audit; it ends with runs/quickstart/report.html). Extra arguments go to `synthaug run`,
# e.g. --force report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SYNTHAUG_VENV:-.venv}"
"$VENV/bin/synthaug" run configs/quickstart.yaml --out runs/quickstart "$@"
