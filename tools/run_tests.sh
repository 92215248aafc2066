#!/usr/bin/env bash
# Set up the environment (idempotent) and run the test suite.
#   bash tools/run_tests.sh            # default suite (slow end-to-end tests deselected, counted)
#   bash tools/run_tests.sh --slow     # only the slow end-to-end tests
#   bash tools/run_tests.sh -- ARGS    # extra pytest arguments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
MARK="not slow"
if [[ "${1:-}" == "--slow" ]]; then MARK="slow"; shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
echo "[run_tests] pytest -m \"$MARK\" (the other marker's tests are reported as deselected)"
exec "$ROOT/.venv/bin/python" -m pytest -m "$MARK" "$@"
