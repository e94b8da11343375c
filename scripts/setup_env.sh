#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install synthaug into it.
# torch / torchvision are pinned here (2.14.1 / 0.29.1); everything else comes from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SYNTHAUG_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.synthaug-installed"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  # dev tools and the optional cluster backends (ray, submitit) that the executor tests run for real
  "$VENV/bin/python" -m pip install -q -e ".[dev,ray,slurm]"
  echo "$want" > "$stamp"
fi
