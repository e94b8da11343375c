#!/usr/bin/env bash
# The main job: set up, audit the phantom data, run the quickstart study into runs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SYNTHAUG_VENV:-.venv}"
"$VENV/bin/synthaug" audit phantom --json runs/quickstart-audit.json
"$VENV/bin/synthaug" run configs/quickstart.yaml --out runs/quickstart "$@"
