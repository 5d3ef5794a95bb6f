#!/usr/bin/env bash
# The demo: two routers in network namespaces run pyike on the seed article's racoon.conf,
# setkey.conf and psk.txt, and ping from one LAN to the other over GRE inside ESP.
# Everything it creates is removed when it ends, also on Ctrl-C or failure. Its set-up installs
# only what the demo needs and leaves the host's services alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m tests.e2e.demo "$@"  # --tunnel: ESP tunnel mode, no GRE
