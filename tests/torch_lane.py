"""The torch lane: runs a script of tools/ under the PyTorch environment.

The environment (torch 2.13.0 CPU + pytorch-metric-learning 2.9.0) is made
by `bash tools/make_torch_venv.sh`; tests find its python at
`$KERAS_MDR_TORCH_PYTHON`, default `<repo>/.venv-torch/bin/python`. A missing
environment is a failure, not a skip: CI must run this lane.
"""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_PYTHON_ENV = "KERAS_MDR_TORCH_PYTHON"
MAKE_VENV = "bash tools/make_torch_venv.sh"


def torch_python():
    """The torch environment's interpreter; fails (never skips) when it is not there."""
    path = Path(os.environ.get(TORCH_PYTHON_ENV) or REPO / ".venv-torch" / "bin" / "python")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"torch lane: no torch Python at {path}. Create the environment with "
            f"`{MAKE_VENV}` (run from {REPO}), or point {TORCH_PYTHON_ENV} at one.",
            pytrace=False,
        )
    return path


def run_torch_script(script, *args, timeout=300):
    """Runs `tools/<script>` with `args` in the torch environment; its stdout."""
    python = torch_python()
    # The torch environment must not see this environment's packages.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([str(python), str(REPO / "tools" / script), *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"{script} failed under {python} (exit {proc.returncode}); if the environment "
            f"is broken, recreate it with `{MAKE_VENV}`.\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc.stdout
