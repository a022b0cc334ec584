#!/usr/bin/env bash
# Creates the PyTorch environment of the torch parity lane (tests that compare
# keras_mdr with PyTorch semantics and with pytorch-metric-learning):
# torch 2.13.0 (CPU build) + pytorch-metric-learning 2.9.0.
#
# Usage: bash tools/make_torch_venv.sh [VENV_DIR]       (default: <repo>/.venv-torch)
#        PYTHON=python3.11 bash tools/make_torch_venv.sh (interpreter to build it from)
#
# Why these pins: pip on the project's machines finds a CPU build of torch 2.13.0
# (torch==2.13.0+cpu) beside PyPI; PyPI's own default torch wheel is a CUDA build
# of several GB. Asking for exactly 2.13.0 takes the CPU build where it is offered;
# pytorch-metric-learning 2.9 only needs torch >= 1.6, so it installs nothing more.
#
# Idempotent: an existing environment that imports the pinned versions is left
# alone. Tests find it at <repo>/.venv-torch/bin/python, or wherever
# KERAS_MDR_TORCH_PYTHON points.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-"$repo/.venv-torch"}
python=${PYTHON:-python3}
pins=("torch==2.13.0" "pytorch-metric-learning==2.9.0")

check='
import warnings; warnings.filterwarnings("ignore")
import numpy, torch, pytorch_metric_learning as pml
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert pml.__version__ == "2.9.0", pml.__version__
print(f"torch {torch.__version__}, pytorch-metric-learning {pml.__version__}, numpy {numpy.__version__}")
'

if [ -x "$venv/bin/python" ] && versions=$("$venv/bin/python" -c "$check" 2>/dev/null); then
  echo "make_torch_venv: $venv is ready ($versions); nothing to do."
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "make_torch_venv: creating $venv with $("$python" --version 2>&1) ($python)"
  "$python" -m venv "$venv"
else
  echo "make_torch_venv: $venv exists but lacks the pinned versions; reinstalling them"
fi
echo "make_torch_venv: installing ${pins[*]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"

echo "make_torch_venv: checking the environment"
versions=$("$venv/bin/python" -c "$check")
echo "make_torch_venv: $venv is ready ($versions)."
