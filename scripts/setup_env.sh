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
  echo "installing into $VENV (a few minutes on first use; about 7 GB of disk in all):" >&2
  echo "  torch 2.14.1 + torchvision 0.29.1 (the default Linux wheels bring CUDA libraries and triton:" >&2
  echo "  about 5.5 GB; they are used when a GPU is present)" >&2
  echo "  synthaug with its dependencies (diffusers, timm, grad-cam, pandas, ...), the dev tools and the" >&2
  echo "  optional backends: ray and submitit (clusters), transformers and peft (pretrained pipelines, LoRA)" >&2
  echo "  (about 2 GB more)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  # dev tools and the optional backends the tests run for real: ray, submitit (executors), and
  # transformers + peft (the pretrained family on tiny pipelines the tests build)
  "$VENV/bin/python" -m pip install -q -e ".[dev,ray,slurm,hf]"
  echo "$want" > "$stamp"
  echo "environment ready: $VENV" >&2
fi
