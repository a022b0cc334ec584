"""The torch lane of the backbone tests: PyTorch writes checkpoints and reference outputs.

`tools/torch_bn_inception.py` runs once per session in the torch environment
(torch 2.13.0 CPU, made by `bash tools/make_torch_venv.sh`; its python is
`$KERAS_MDR_TORCH_PYTHON`, default `<repo>/.venv-torch/bin/python`). It writes
.pth files in both layouts and an .npz of PyTorch's outputs; the tests read
them here, where PyTorch is not installed. A missing torch environment is a
failure, not a skip: CI must run this lane.
"""

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

# The tests import the hand-written .pth files' helper beside them.
sys.path.insert(0, os.path.dirname(__file__))

REPO = Path(__file__).resolve().parents[2]
TORCH_PYTHON_ENV = "KERAS_MDR_TORCH_PYTHON"
TOOL = REPO / "tools" / "torch_bn_inception.py"
MAKE_VENV = "bash tools/make_torch_venv.sh"
SEED = 0
IMAGE_SIZE = 224
NUM_IMAGES = 2
TIMEOUT_S = 600


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


@pytest.fixture(scope="session")
def torch_lane(tmp_path_factory):
    """PyTorch's files and outputs: `.dir` (the .pth files), `.reference` (arrays), `.seconds`."""
    python = torch_python()
    out_dir = tmp_path_factory.mktemp("torch_bn_inception")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    command = [str(python), str(TOOL), str(out_dir), "--seed", str(SEED),
               "--image_size", str(IMAGE_SIZE), "--num_images", str(NUM_IMAGES)]
    start = time.time()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(
            f"{TOOL.name} failed under {python} (exit {proc.returncode}). If the torch "
            f"environment is broken, recreate it with `{MAKE_VENV}`.\n"
            f"--- stderr (tail) ---\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    with np.load(out_dir / "reference.npz") as data:
        reference = {key: data[key] for key in data.files}
    assert str(reference["torch_version"]).startswith("2.13.0"), reference["torch_version"]
    return types.SimpleNamespace(dir=out_dir, reference=reference, seconds=time.time() - start,
                                 log=proc.stdout.strip())
