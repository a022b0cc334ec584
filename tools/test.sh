#!/usr/bin/env bash
# Installs keras_mdr with its test dependencies in .venv, the legacy TensorFlow
# Addons lane in .venv-tfa, and runs the whole test suite. Extra arguments go
# to pytest. Fails loudly when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing keras_mdr[test] into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

bash tools/make_tfa_venv.sh .venv-tfa

echo "== running the test suite"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "ERROR: pytest collected no test: nothing was checked." >&2
  exit 1
fi
exit "$status"
