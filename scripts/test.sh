#!/usr/bin/env bash
# The whole test suite, from a fresh machine: the tests' set-up, lint, then every test tier.
# Extra arguments go to pytest (e.g. `-m "not interop"` for the fast suite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
