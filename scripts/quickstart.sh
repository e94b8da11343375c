#!/usr/bin/env bash
# The main job: set up, audit the phantom data, run the quickstart study into runs/quickstart
# (ends with runs/quickstart/report.html). Extra arguments go to `synthaug run`, e.g. --force report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SYNTHAUG_VENV:-.venv}"
"$VENV/bin/synthaug" audit phantom --config configs/quickstart.yaml --size 32 --json runs/quickstart-audit.json
"$VENV/bin/synthaug" run configs/quickstart.yaml --out runs/quickstart "$@"
