#!/usr/bin/env bash
# The project's test command (README): set up the virtualenv if needed, then run everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/pytest ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
fi
export MPLBACKEND=Agg PYTHONHASHSEED=random
exec .venv/bin/pytest tests notebooks --nbval-lax "$@"
