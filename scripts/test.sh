#!/usr/bin/env bash
# The whole test suite: set up (install + build), run every test, then a short fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/format-check.sh
ctest --preset release
bash scripts/fuzz-smoke.sh
