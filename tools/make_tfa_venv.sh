#!/usr/bin/env bash
# Creates the legacy environment of the TFA parity lane (tests/losses/test_tfa_parity.py):
# TensorFlow 2.15.1 + TensorFlow Addons 0.23.0 (TFA cannot be imported on TF >= 2.16).
#
# Usage: bash tools/make_tfa_venv.sh [VENV_DIR]     (default: <repo>/.venv-tfa)
#        PYTHON=python3.11 bash tools/make_tfa_venv.sh  (interpreter to build it from)
#
# Idempotent: an existing environment that already imports the pinned versions is
# left alone; otherwise the venv is created if missing and the pins (re)installed.
# The tests find it at <repo>/.venv-tfa/bin/python, or wherever
# KERAS_MDR_TFA_PYTHON points.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-"$repo/.venv-tfa"}
python=${PYTHON:-python3}
pins=("tensorflow==2.15.1" "tensorflow-addons==0.23.0" "numpy<2")

check='
import warnings; warnings.filterwarnings("ignore")
import numpy, tensorflow as tf, tensorflow_addons as tfa
assert tf.__version__ == "2.15.1", tf.__version__
assert tfa.__version__ == "0.23.0", tfa.__version__
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
print(f"TF {tf.__version__}, TFA {tfa.__version__}, numpy {numpy.__version__}")
'

if [ -x "$venv/bin/python" ] &&
  versions=$(TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "$check" 2>/dev/null); then
  echo "make_tfa_venv: $venv is ready ($versions); nothing to do."
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  # TF 2.15.1 publishes wheels for CPython 3.9-3.11 only.
  echo "make_tfa_venv: creating $venv with $("$python" --version 2>&1) ($python)"
  "$python" -m venv "$venv"
else
  echo "make_tfa_venv: $venv exists but lacks the pinned versions; reinstalling them"
fi
echo "make_tfa_venv: installing ${pins[*]}"
"$venv/bin/python" -m pip install --disable-pip-version-check "${pins[@]}"

echo "make_tfa_venv: checking the environment"
versions=$(TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "$check")
echo "make_tfa_venv: $venv is ready ($versions)."
