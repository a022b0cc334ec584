#!/usr/bin/env bash
# Installs keras_mdr with its test dependencies in .venv, the legacy TensorFlow
# Addons lane in .venv-tfa, the PyTorch lane in .venv-torch, and runs the whole
# test suite. Extra arguments go
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
bash tools/make_torch_venv.sh .venv-torch

# Real Fashion-MNIST for the data tests and the quality benchmark (Debian package).
if [ ! -e /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's dataset-fashion-mnist"
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null)) ||
      echo "WARNING: could not install dataset-fashion-mnist; its test will fail" >&2
  else
    echo "WARNING: /usr/share/datasets/fashion-mnist is missing: run 'apt-get install dataset-fashion-mnist' as root" >&2
  fi
fi

# Two pytest workers, one test file each at a time (`--dist loadfile` keeps a
# module's fixtures in one process): most tests are single-threaded Python and
# TensorFlow tracing, so two workers use both cores (measured on 2 cores: 11.0
# min against 19.0 min in one process). KERAS_MDR_TEST_WORKERS=0 runs in this
# process (xdist's own -n 0: for pdb, or for -s output in order).
WORKERS=${KERAS_MDR_TEST_WORKERS:-2}
echo "== running the test suite ($WORKERS pytest workers)"
set +e
.venv/bin/python -m pytest -n "$WORKERS" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "ERROR: pytest collected no test: nothing was checked." >&2
  exit 1
fi
exit "$status"
